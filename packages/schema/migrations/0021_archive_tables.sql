CREATE TABLE "archived_events" (
	"event" text NOT NULL,
	"event_id" uuid NOT NULL,
	"event_version" bigint NOT NULL,
	"decider" text NOT NULL,
	"decider_id" text NOT NULL,
	"data" jsonb NOT NULL,
	"command_id" uuid NOT NULL,
	"previous_id" uuid,
	"final" boolean NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"offset" bigint PRIMARY KEY NOT NULL,
	"transaction_id" "xid8" NOT NULL,
	"metadata" jsonb
);
--> statement-breakpoint
CREATE TABLE "archived_streams" (
	"decider" text NOT NULL,
	"decider_id" text NOT NULL,
	"events" bigint NOT NULL,
	"last_offset" bigint NOT NULL,
	"closed_at" timestamp with time zone NOT NULL,
	"archived_at" timestamp with time zone DEFAULT now() NOT NULL,
	"archived_by" text NOT NULL,
	"removed_at" timestamp with time zone,
	CONSTRAINT "archived_streams_pkey" PRIMARY KEY("decider","decider_id")
);
--> statement-breakpoint
CREATE TABLE "retention_runs" (
	"closed_before" timestamp with time zone NOT NULL,
	"streams" bigint NOT NULL,
	"events" bigint NOT NULL,
	"removed_by" text NOT NULL,
	"removed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "archived_events_decider_id_offset_idx" ON "archived_events" USING btree ("decider_id","offset");--> statement-breakpoint
CREATE INDEX "archived_events_event_id_idx" ON "archived_events" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "archived_streams_retention_idx" ON "archived_streams" USING btree ("closed_at") WHERE "archived_streams"."removed_at" IS NULL;--> statement-breakpoint
CREATE INDEX "archived_streams_decider_closed_at_idx" ON "archived_streams" USING btree ("decider","closed_at");--> statement-breakpoint
CREATE INDEX "snapshots_offset_idx" ON "snapshots" USING btree ("offset");