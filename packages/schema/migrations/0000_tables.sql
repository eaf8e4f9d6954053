CREATE TABLE "deciders" (
	"decider" text NOT NULL,
	"event" text NOT NULL,
	"event_version" bigint DEFAULT 1 NOT NULL,
	"description" text,
	CONSTRAINT "deciders_pkey" PRIMARY KEY("decider","event","event_version")
);
--> statement-breakpoint
CREATE TABLE "events" (
	"event" text NOT NULL,
	"event_id" uuid NOT NULL,
	"event_version" bigint DEFAULT 1 NOT NULL,
	"decider" text NOT NULL,
	"decider_id" text NOT NULL,
	"data" jsonb NOT NULL,
	"command_id" uuid NOT NULL,
	"previous_id" uuid,
	"final" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"offset" bigserial PRIMARY KEY NOT NULL,
	"transaction_id" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	CONSTRAINT "events_event_id_key" UNIQUE("event_id"),
	CONSTRAINT "events_previous_id_key" UNIQUE("previous_id")
);
--> statement-breakpoint
CREATE TABLE "locks" (
	"view" text NOT NULL,
	"decider_id" text NOT NULL,
	"offset" bigint NOT NULL,
	"last_offset" bigint NOT NULL,
	"locked_until" timestamp with time zone DEFAULT now() - interval '1ms' NOT NULL,
	"offset_final" boolean NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_id" uuid,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	CONSTRAINT "locks_pkey" PRIMARY KEY("view","decider_id")
);
--> statement-breakpoint
CREATE TABLE "parked_events" (
	"view" text NOT NULL,
	"decider_id" text NOT NULL,
	"offset" bigint NOT NULL,
	"event_id" uuid NOT NULL,
	"error" text NOT NULL,
	"attempts" integer NOT NULL,
	"stream_stopped" boolean NOT NULL,
	"parked_at" timestamp with time zone DEFAULT now() NOT NULL,
	"retry_requested_at" timestamp with time zone,
	CONSTRAINT "parked_events_pkey" PRIMARY KEY("view","offset")
);
--> statement-breakpoint
CREATE TABLE "view_registration_gate" (
	"id" smallint PRIMARY KEY DEFAULT 1 NOT NULL,
	"generation" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "view_registration_gate_one_row" CHECK ("view_registration_gate"."id" = 1)
);
--> statement-breakpoint
CREATE TABLE "views" (
	"view" text PRIMARY KEY NOT NULL,
	"start_at" timestamp DEFAULT now() NOT NULL,
	"lock_timeout_s" bigint DEFAULT 300 NOT NULL,
	"pooling_delay_s" bigint,
	"pooling_delay_ms" bigint,
	"edge_function_url" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "views_lock_timeout_s_check" CHECK ("views"."lock_timeout_s" > 0),
	CONSTRAINT "views_pooling_delay_s_check" CHECK ("views"."pooling_delay_s" >= 0),
	CONSTRAINT "views_pooling_delay_ms_check" CHECK ("views"."pooling_delay_ms" >= 0)
);
--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_decider_event_fkey" FOREIGN KEY ("decider","event","event_version") REFERENCES "public"."deciders"("decider","event","event_version") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "locks" ADD CONSTRAINT "locks_view_fkey" FOREIGN KEY ("view") REFERENCES "public"."views"("view") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "parked_events" ADD CONSTRAINT "parked_events_view_fkey" FOREIGN KEY ("view") REFERENCES "public"."views"("view") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "events_first_event_key" ON "events" USING btree ("decider_id","decider") WHERE "events"."previous_id" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "events_final_key" ON "events" USING btree ("decider_id","decider") WHERE "events"."final";--> statement-breakpoint
CREATE INDEX "events_decider_id_offset_idx" ON "events" USING btree ("decider_id","offset");--> statement-breakpoint
CREATE INDEX "locks_pending_idx" ON "locks" USING btree ("view","locked_until","offset") WHERE "locks"."last_offset" < "locks"."offset";--> statement-breakpoint
CREATE INDEX "parked_events_retry_idx" ON "parked_events" USING btree ("view","retry_requested_at") WHERE "parked_events"."retry_requested_at" IS NOT NULL;