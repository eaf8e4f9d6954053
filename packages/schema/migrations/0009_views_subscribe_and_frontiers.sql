CREATE TABLE "view_frontiers" (
	"view" text PRIMARY KEY NOT NULL,
	"transaction_id" "xid8" DEFAULT '0'::xid8 NOT NULL,
	"offset" bigint DEFAULT 0 NOT NULL,
	"floor_transaction_id" "xid8" DEFAULT '0'::xid8 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "views" ADD COLUMN "subscribed_deciders" text[];--> statement-breakpoint
ALTER TABLE "views" ADD COLUMN "subscribed_events" text[];--> statement-breakpoint
ALTER TABLE "view_frontiers" ADD CONSTRAINT "view_frontiers_view_fkey" FOREIGN KEY ("view") REFERENCES "public"."views"("view") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "events_transaction_id_offset_idx" ON "events" USING btree ("transaction_id","offset");