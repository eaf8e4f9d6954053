-- Custom SQL migration: input checks where a null or negative argument used to be taken silently for something
-- else, or reported as something it is not (src/bad-input.test.ts shows each case). Each function is replaced with
-- the same signature and the same body, plus a check at the top: 22023 (invalid_parameter_value) for arguments,
-- 23502 (not_null_violation) for the columns of an append. Error texts that fstore-sql clients match are unchanged.
-- One statement per chunk, as in the other migrations.

-- check_event_append (the append trigger): a null decider or decider_id with a previous_id was reported as
-- 23514 events_previous_id_same_stream, a concurrency conflict to typed clients. Now the NOT NULL constraints
-- report it (23502), as they already did for a first event.
CREATE OR REPLACE FUNCTION check_event_append() RETURNS trigger
    LANGUAGE plpgsql AS
$check_event_append$
DECLARE
    v_previous_offset bigint;
BEGIN
    -- A null stream or decider fails on the columns' NOT NULL constraints, which PostgreSQL checks after this
    -- trigger: leave it to them, rather than report it as a previous_id in another stream.
    IF NEW.decider IS NULL OR NEW.decider_id IS NULL THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1
               FROM events e
               WHERE e.decider_id = NEW.decider_id
                 AND e.decider = NEW.decider
                 AND e.final) THEN
        RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed, you can not append events to it.'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                  DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
    END IF;
    IF NEW.previous_id IS NULL THEN
        IF EXISTS (SELECT 1
                   FROM events e
                   WHERE e.decider_id = NEW.decider_id
                     AND e.decider = NEW.decider
                     AND e.previous_id IS NULL) THEN
            RAISE EXCEPTION 'previous_id can only be null for the first decider event'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_previous_id_required',
                      DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
        END IF;
    ELSE
        SELECT e."offset"
        INTO v_previous_offset
        FROM events e
        WHERE e.event_id = NEW.previous_id
          AND e.decider_id = NEW.decider_id
          AND e.decider = NEW.decider;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'previous_id must be in the same decider'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_previous_id_same_stream',
                      DETAIL = format('decider %s, decider_id %s, previous_id %s', NEW.decider, NEW.decider_id,
                                      NEW.previous_id);
        END IF;
        -- A sequence that hands out cached blocks per connection (YugabyteDB's default) can give this event a
        -- smaller offset than the one before it. Within a stream the order must hold, so draw again until it does.
        WHILE NEW."offset" <= v_previous_offset LOOP
            NEW."offset" := nextval(pg_get_serial_sequence('events', 'offset'));
        END LOOP;
    END IF;
    RETURN NEW;
END;
$check_event_append$;
--> statement-breakpoint
-- append_events: a null decider, decider_id or command_id. With a previous_id given, the stale-stream check ran first
-- and reported it as a concurrency conflict (23514 events_expected_last_event), which typed clients retry. Now it is
-- 23502 not_null_violation naming the column, as append_event's INSERT reports it.
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$append_events$
DECLARE
    v_count      int;
    v_first_id   uuid;
    v_last_id    uuid;
    v_stale      boolean;
    v_null       text := CASE
                             WHEN v_decider IS NULL THEN 'decider'
                             WHEN v_decider_id IS NULL THEN 'decider_id'
                             WHEN v_command_id IS NULL THEN 'command_id' END;
BEGIN
    IF v_null IS NOT NULL THEN
        RAISE EXCEPTION 'append_events: % must not be null', v_null
            USING ERRCODE = 'not_null_violation', SCHEMA = 'public', TABLE = 'events', COLUMN = v_null;
    END IF;
    IF v_events IS NULL OR jsonb_typeof(v_events) <> 'array' OR jsonb_array_length(v_events) = 0 THEN
        RAISE EXCEPTION 'append_events: events must be a non-empty JSON array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_count := jsonb_array_length(v_events);
    v_first_id := (v_events -> 0 ->> 'event_id')::uuid;

    -- A retry of a batch that was already stored?
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = v_first_id) THEN
        IF (SELECT count(*)
            FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)
                     JOIN events e ON e.event_id = (x.element ->> 'event_id')::uuid
            WHERE e.decider = v_decider
              AND e.decider_id = v_decider_id
              AND e.command_id = v_command_id
              AND e.event = x.element ->> 'event'
              AND e.event_version = coalesce((x.element ->> 'event_version')::bigint, 1)
              AND e.data = x.element -> 'data'
              AND e.final = coalesce((x.element ->> 'final')::boolean, false)
              AND e.previous_id IS NOT DISTINCT FROM
                  CASE WHEN x.n = 1 THEN v_previous_id ELSE (v_events -> (x.n::int - 2) ->> 'event_id')::uuid END
           ) = v_count THEN
            RETURN QUERY SELECT e.*
                         FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)
                                  JOIN events e ON e.event_id = (x.element ->> 'event_id')::uuid
                         ORDER BY x.n;
            RETURN;
        END IF;
        RAISE EXCEPTION 'append_events: event % is already stored, with other content', v_first_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_event_id_key',
                  DETAIL = json_build_object('event_id', v_first_id)::text;
    END IF;

    -- The same one-probe questions as the append trigger (see check_event_append), asked once for the batch.
    IF EXISTS (SELECT 1 FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider AND e.final) THEN
        RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed, you can not append events to it.'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                  DETAIL = format('decider %s, decider_id %s', v_decider, v_decider_id);
    END IF;
    IF v_previous_id IS NULL THEN
        v_stale := EXISTS (SELECT 1
                           FROM events e
                           WHERE e.decider_id = v_decider_id
                             AND e.decider = v_decider
                             AND e.previous_id IS NULL);
    ELSE
        -- v_previous_id is the stream's last event if it is in the stream and nothing follows it.
        v_stale := NOT EXISTS (SELECT 1
                               FROM events e
                               WHERE e.event_id = v_previous_id
                                 AND e.decider_id = v_decider_id
                                 AND e.decider = v_decider)
            OR EXISTS (SELECT 1 FROM events e WHERE e.previous_id = v_previous_id);
    END IF;
    IF v_stale THEN
        -- Only on this error path: where does the stream really end?
        SELECT e.event_id
        INTO v_last_id
        FROM events e
        WHERE e.decider_id = v_decider_id
          AND e.decider = v_decider
        ORDER BY e."offset" DESC
        LIMIT 1;
        RAISE EXCEPTION 'append_events: stream % of % was expected to end at %, but it ends at %',
            v_decider_id, v_decider, coalesce(v_previous_id::text, '(nothing: a new stream)'),
            coalesce(v_last_id::text, '(nothing: no event yet)')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_expected_last_event',
                  DETAIL = json_build_object('expected', v_previous_id, 'found', v_last_id)::text;
    END IF;

    -- One statement for the batch: each row still passes the append trigger (which sees the rows before it in
    -- the same statement), and the lock rows are advanced once per stream.
    RETURN QUERY
        WITH batch AS (SELECT x.n,
                              x.element ->> 'event'                                       AS event,
                              (x.element ->> 'event_id')::uuid                            AS event_id,
                              coalesce((x.element ->> 'event_version')::bigint, 1)        AS event_version,
                              x.element -> 'data'                                         AS data,
                              coalesce((x.element ->> 'final')::boolean, false)           AS final
                       FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)),
             inserted AS (
                 INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final)
                     SELECT b.event, b.event_id, b.event_version, v_decider, v_decider_id, b.data, v_command_id,
                            coalesce(lag(b.event_id) OVER (ORDER BY b.n), v_previous_id), b.final
                     FROM batch b
                     ORDER BY b.n
                     RETURNING *)
        SELECT *
        FROM inserted
        ORDER BY inserted."offset";
END;
$append_events$;
--> statement-breakpoint
-- ack_events: a null v_release kept the lease (CASE WHEN NULL takes the ELSE branch) while the default is to
-- release it. Say true or false.
CREATE OR REPLACE FUNCTION ack_events(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint,
                                      v_release boolean DEFAULT true)
    RETURNS SETOF locks
    LANGUAGE plpgsql AS
$ack_events$
DECLARE
    v_lock locks;
BEGIN
    IF v_release IS NULL THEN
        RAISE EXCEPTION 'ack_events: release must be true or false, got NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id) THEN
        RAISE EXCEPTION 'ack_events: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, v_offset),
        locked_until = CASE WHEN v_release THEN now() ELSE l.locked_until END,
        lease_id     = CASE WHEN v_release THEN NULL ELSE l.lease_id END,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id
    RETURNING l.* INTO v_lock;
    IF NOT FOUND THEN
        PERFORM raise_lease_lost(v_view, v_decider_id, v_lease_id);
    END IF;
    RETURN NEXT v_lock;
END;
$ack_events$;
--> statement-breakpoint
-- release_lease: a null or negative delay was taken as zero (greatest() skips nulls), unlike schedule_nack_event,
-- which refuses both.
CREATE OR REPLACE FUNCTION release_lease(v_view text, v_decider_id text, v_lease_id uuid, v_delay_ms bigint DEFAULT 0)
    RETURNS boolean
    LANGUAGE plpgsql AS
$release_lease$
BEGIN
    IF v_delay_ms IS NULL OR v_delay_ms < 0 THEN
        RAISE EXCEPTION 'release_lease: delay must be zero or more milliseconds, got %', v_delay_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET locked_until = now() + v_delay_ms * interval '1 millisecond',
        lease_id     = NULL,
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    RETURN FOUND;
END;
$release_lease$;
--> statement-breakpoint
-- fail_event: a null or negative retry delay was taken as zero, a null maximum as one (the event was parked at its
-- first failure), and a null v_stop_stream failed only at the maximum, with a not-null violation on parked_events.
CREATE OR REPLACE FUNCTION fail_event(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint, v_error text,
                                      v_retry_ms bigint, v_max_attempts int, v_stop_stream boolean DEFAULT false)
    RETURNS text
    LANGUAGE plpgsql AS
$fail_event$
DECLARE
    v_attempts int;
    v_event_id uuid;
BEGIN
    IF v_retry_ms IS NULL OR v_retry_ms < 0 THEN
        RAISE EXCEPTION 'fail_event: retry delay must be zero or more milliseconds, got %', v_retry_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_max_attempts IS NULL OR v_stop_stream IS NULL THEN
        RAISE EXCEPTION 'fail_event: max attempts and stop stream must not be null, got % and %', v_max_attempts,
            v_stop_stream
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e.event_id INTO v_event_id FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id;
    IF v_event_id IS NULL THEN
        RAISE EXCEPTION 'fail_event: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET attempts   = l.attempts + 1,
        last_error = v_error,
        updated_at = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id
    RETURNING l.attempts INTO v_attempts;
    IF NOT FOUND THEN
        PERFORM raise_lease_lost(v_view, v_decider_id, v_lease_id);
    END IF;
    IF v_attempts < greatest(v_max_attempts, 1) THEN
        UPDATE locks l
        SET locked_until = now() + v_retry_ms * interval '1 millisecond',
            lease_id     = NULL
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id;
        RETURN 'retry';
    END IF;
    INSERT INTO parked_events (view, decider_id, "offset", event_id, error, attempts, stream_stopped)
    VALUES (v_view, v_decider_id, v_offset, v_event_id, coalesce(v_error, ''), v_attempts, v_stop_stream)
    ON CONFLICT ON CONSTRAINT parked_events_pkey DO UPDATE
        SET error              = EXCLUDED.error,
            attempts           = EXCLUDED.attempts,
            stream_stopped     = EXCLUDED.stream_stopped,
            parked_at          = now(),
            retry_requested_at = NULL;
    IF v_stop_stream THEN
        UPDATE locks l
        SET locked_until = 'infinity',
            lease_id     = NULL
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id;
        RETURN 'stopped';
    END IF;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, v_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id;
    RETURN 'parked';
END;
$fail_event$;
--> statement-breakpoint
-- set_wakeups: a null turned wake-ups off and answered null.
CREATE OR REPLACE FUNCTION set_wakeups(v_enabled boolean) RETURNS boolean
    LANGUAGE plpgsql AS
$set_wakeups$
BEGIN
    IF v_enabled IS NULL THEN
        RAISE EXCEPTION 'set_wakeups: enabled must be true or false, got NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_enabled THEN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = 'events'::regclass AND t.tgname = 't_notify_events_appended') THEN
            BEGIN
                CREATE TRIGGER t_notify_events_appended
                    AFTER INSERT
                    ON events
                    FOR EACH STATEMENT
                EXECUTE FUNCTION notify_events_appended();
            EXCEPTION
                -- Another session created it meanwhile (it committed while this one waited for the table's lock).
                WHEN duplicate_object THEN NULL;
            END;
        END IF;
    ELSE
        DROP TRIGGER IF EXISTS t_notify_events_appended ON events;
    END IF;
    RETURN v_enabled;
END;
$set_wakeups$;
