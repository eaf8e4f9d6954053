ALTER TABLE "events" ADD COLUMN "metadata" jsonb;--> statement-breakpoint
CREATE INDEX "events_correlation_id_idx" ON "events" USING btree (("metadata" ->> 'correlation_id'),"offset") WHERE "events"."metadata" ? 'correlation_id';--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_metadata_check" CHECK ("events"."metadata" IS NULL OR (
        jsonb_typeof("events"."metadata") = 'object'
        AND "events"."metadata" - ARRAY['correlation_id', 'causation_id', 'traceparent', 'tracestate', 'headers'] = '{}'::jsonb
        AND coalesce(jsonb_typeof("events"."metadata" -> 'correlation_id'), 'string') = 'string'
        AND coalesce(length("events"."metadata" ->> 'correlation_id'), 0) <= 200
        AND coalesce(jsonb_typeof("events"."metadata" -> 'causation_id'), 'string') = 'string'
        AND coalesce(length("events"."metadata" ->> 'causation_id'), 0) <= 200
        AND coalesce(jsonb_typeof("events"."metadata" -> 'traceparent'), 'string') = 'string'
        AND coalesce(jsonb_typeof("events"."metadata" -> 'tracestate'), 'string') = 'string'
        AND coalesce(jsonb_typeof("events"."metadata" -> 'headers'), 'object') = 'object'
        AND pg_column_size("events"."metadata") <= 8192));