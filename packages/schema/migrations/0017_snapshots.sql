CREATE TABLE "snapshots" (
	"decider" text NOT NULL,
	"decider_id" text NOT NULL,
	"version" text NOT NULL,
	"offset" bigint NOT NULL,
	"event_id" uuid NOT NULL,
	"state" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "snapshots_pkey" PRIMARY KEY("decider","decider_id","version")
);
--> statement-breakpoint
ALTER TABLE "snapshots" ADD CONSTRAINT "snapshots_offset_fkey" FOREIGN KEY ("offset") REFERENCES "public"."events"("offset") ON DELETE cascade ON UPDATE no action;