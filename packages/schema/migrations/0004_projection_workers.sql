-- Custom SQL migration: what projection workers need beyond fstore-sql's stream_events/ack_event (which stay as
-- they are): batch leases with a token, acknowledgements that only the lease's holder can make, lease renewal,
-- failures with backoff and a dead letter (parked_events), rebuilds, status figures, and optional NOTIFY wake-ups.
-- One statement per chunk, as in the other migrations.

-- API: lease up to v_streams streams of a view that have unread events, for v_lock_seconds, and return up to
-- v_events_per_stream of the next unread events of each, in offset order, with the lease's token and the number of
-- failed deliveries so far. A stream with a backlog costs one lease and one acknowledgement per batch, not per event.
-- Streams are chosen as in stream_events (least recently served first, skipping those another consumer holds),
-- from locks_pending_idx: the cost does not grow with the number of streams.
-- Example: SELECT * FROM lease_events('view1', 10, 100, 30);
CREATE OR REPLACE FUNCTION lease_events(v_view text, v_streams int DEFAULT 10, v_events_per_stream int DEFAULT 100,
                                        v_lock_seconds int DEFAULT 300)
    RETURNS TABLE
            (
                lease_id       uuid,
                attempts       int,
                event          text,
                event_id       uuid,
                event_version  bigint,
                decider        text,
                decider_id     text,
                data           jsonb,
                command_id     uuid,
                previous_id    uuid,
                final          boolean,
                created_at     timestamptz,
                "offset"       bigint,
                transaction_id xid8
            )
    LANGUAGE plpgsql AS
$lease_events$
#variable_conflict use_column
BEGIN
    IF v_streams IS NULL OR v_streams < 0 OR v_events_per_stream IS NULL OR v_events_per_stream < 1 THEN
        RAISE EXCEPTION 'lease_events: streams must be zero or more and events per stream one or more, got % and %',
            v_streams, v_events_per_stream
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_lock_seconds IS NULL OR v_lock_seconds < 1 THEN
        RAISE EXCEPTION 'lease_events: lock seconds must be one or more, got %', v_lock_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH candidates AS (SELECT l.view, l.decider_id
                            FROM locks l
                            WHERE l.view = v_view
                              AND l.last_offset < l."offset"
                              AND l.locked_until <= now()
                            ORDER BY l.locked_until, l."offset"
                            LIMIT v_streams FOR UPDATE SKIP LOCKED),
             leased AS (UPDATE locks l
                 SET locked_until = now() + make_interval(secs => v_lock_seconds),
                     lease_id = gen_random_uuid(),
                     updated_at = now()
                 FROM candidates c
                 WHERE l.view = c.view
                   AND l.decider_id = c.decider_id
                 RETURNING l.decider_id, l.last_offset, l.lease_id, l.attempts)
        SELECT leased.lease_id, leased.attempts, e.*
        FROM leased
                 CROSS JOIN LATERAL (SELECT *
                                     FROM events ev
                                     WHERE ev.decider_id = leased.decider_id
                                       AND ev."offset" > leased.last_offset
                                     ORDER BY ev."offset"
                                     LIMIT v_events_per_stream) e
        ORDER BY e."offset";
END;
$lease_events$;
--> statement-breakpoint
-- Raised when the caller no longer holds the lease: it expired and another consumer took the stream, or an operator
-- reset the view. Whatever the caller's transaction did must not commit.
CREATE OR REPLACE FUNCTION raise_lease_lost(v_view text, v_decider_id text, v_lease_id uuid) RETURNS void
    LANGUAGE plpgsql AS
$raise_lease_lost$
BEGIN
    RAISE EXCEPTION 'the lease % on stream % of view % is no longer held', v_lease_id, v_decider_id, v_view
        USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held',
              HINT = 'It expired and another consumer took the stream, or the view was reset. Renew long leases.';
END;
$raise_lease_lost$;
--> statement-breakpoint
-- API: the holder of a lease acknowledges the stream's events up to v_offset (an event of that stream), and
-- releases it (or, with v_release false, keeps holding it: a worker that handled part of a batch and will report
-- the next event as failed). Run it in the transaction that wrote the read model: if the lease was lost meanwhile,
-- it raises and the read model's writes roll back with it, so each event changes the read model exactly once.
-- Example: SELECT * FROM ack_events('view1', 'f156a3c4-…', '8f0c…', 42);
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
-- API: the holder of a lease extends it to v_lock_seconds from now, for a handler that takes long. Returns false
-- when the lease is no longer held (the handler should stop: its acknowledgement would be refused).
CREATE OR REPLACE FUNCTION renew_lease(v_view text, v_decider_id text, v_lease_id uuid, v_lock_seconds int)
    RETURNS boolean
    LANGUAGE plpgsql AS
$renew_lease$
BEGIN
    IF v_lock_seconds IS NULL OR v_lock_seconds < 1 THEN
        RAISE EXCEPTION 'renew_lease: lock seconds must be one or more, got %', v_lock_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET locked_until = now() + make_interval(secs => v_lock_seconds),
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    RETURN FOUND;
END;
$renew_lease$;
--> statement-breakpoint
-- API: the holder of a lease gives it back without acknowledging (a worker stopping before it started the
-- stream's events), so the stream is deliverable again after v_delay_ms. Returns false when it was not held.
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
-- API: the holder of a lease reports that the stream's next event (v_offset) failed with v_error. Below
-- v_max_attempts the stream is released for a retry after v_retry_ms ('retry'). At v_max_attempts the event is
-- parked in parked_events with its error and attempts, and the stream either moves on past it ('parked') or, with
-- v_stop_stream, stops at it until an operator retries or discards it ('stopped').
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
-- API: the parked events of a view (of every view when v_view is null), oldest first.
-- Example: SELECT * FROM list_parked_events('view1');
CREATE OR REPLACE FUNCTION list_parked_events(v_view text DEFAULT NULL)
    RETURNS SETOF parked_events
    LANGUAGE sql
    STABLE AS
$list_parked_events$
SELECT *
FROM parked_events p
WHERE v_view IS NULL
   OR p.view = v_view
ORDER BY p.parked_at, p."offset";
$list_parked_events$;
--> statement-breakpoint
-- API: deliver a parked event again. If its stream stopped at it, the stream resumes from it, in order. If the
-- stream moved on, a worker delivers that one event once more (out of its stream's order, since the stream went
-- past it) and removes it from parked_events when it succeeds.
-- Example: SELECT * FROM retry_parked_event('view1', 42);
CREATE OR REPLACE FUNCTION retry_parked_event(v_view text, v_offset bigint)
    RETURNS SETOF parked_events
    LANGUAGE plpgsql AS
$retry_parked_event$
DECLARE
    v_parked parked_events;
BEGIN
    SELECT * INTO v_parked FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no event is parked at offset % for view %', v_offset, v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_parked.stream_stopped THEN
        DELETE FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset;
        UPDATE locks l
        SET locked_until = now(),
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_parked.decider_id;
        RETURN NEXT v_parked;
        RETURN;
    END IF;
    RETURN QUERY UPDATE parked_events p
        SET retry_requested_at = now()
        WHERE p.view = v_view
          AND p."offset" = v_offset
        RETURNING p.*;
END;
$retry_parked_event$;
--> statement-breakpoint
-- API: give up on a parked event for good. If its stream stopped at it, the stream moves on past it.
-- Example: SELECT * FROM discard_parked_event('view1', 42);
CREATE OR REPLACE FUNCTION discard_parked_event(v_view text, v_offset bigint)
    RETURNS SETOF parked_events
    LANGUAGE plpgsql AS
$discard_parked_event$
DECLARE
    v_parked parked_events;
BEGIN
    DELETE FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset RETURNING p.* INTO v_parked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no event is parked at offset % for view %', v_offset, v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_parked.stream_stopped THEN
        UPDATE locks l
        SET last_offset  = greatest(l.last_offset, v_offset),
            locked_until = now(),
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_parked.decider_id;
    END IF;
    RETURN NEXT v_parked;
END;
$discard_parked_event$;
--> statement-breakpoint
-- API: rebuild a view from v_start_at: every stream's position goes back to start_at, leases and failure counts
-- are cleared, parked events removed. Empty the read model in the same transaction. Unlike register_view, it
-- resets even when start_at does not change.
-- Example: SELECT * FROM reset_view('view1', '2000-01-01');
CREATE OR REPLACE FUNCTION reset_view(v_view text, v_start_at timestamp)
    RETURNS SETOF views
    LANGUAGE plpgsql AS
$reset_view$
DECLARE
    v_current timestamp;
BEGIN
    SELECT v.start_at INTO v_current FROM views v WHERE v.view = v_view FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reset_view: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_current IS NOT DISTINCT FROM v_start_at THEN
        -- The start_at trigger will not fire for an unchanged value: reset here.
        PERFORM reset_view_positions(v_view, v_start_at);
    END IF;
    RETURN QUERY UPDATE views v SET start_at = v_start_at WHERE v.view = v_view RETURNING v.*;
END;
$reset_view$;
--> statement-breakpoint
-- API: how far behind each view is. events_behind and oldest_unacked_at are read per stream with unread events
-- (locks_pending_idx, then one index range per stream), so their cost follows the backlog, not the log.
-- Example: SELECT * FROM view_status();
CREATE OR REPLACE FUNCTION view_status()
    RETURNS TABLE
            (
                view              text,
                streams           bigint,
                pending_streams   bigint,
                leased_streams    bigint,
                stopped_streams   bigint,
                events_behind     bigint,
                oldest_unacked_at timestamptz,
                parked_events     bigint
            )
    LANGUAGE sql
    STABLE AS
$view_status$
SELECT v.view,
       (SELECT count(*) FROM locks l WHERE l.view = v.view),
       coalesce(p.pending_streams, 0),
       coalesce(p.leased_streams, 0),
       coalesce(p.stopped_streams, 0),
       coalesce(p.events_behind, 0),
       p.oldest_unacked_at,
       (SELECT count(*) FROM parked_events pe WHERE pe.view = v.view)
FROM views v
         LEFT JOIN LATERAL (SELECT count(*)                                                        AS pending_streams,
                                   count(*) FILTER (WHERE l.locked_until > now() AND l.locked_until < 'infinity')
                                                                                                   AS leased_streams,
                                   count(*) FILTER (WHERE l.locked_until = 'infinity')             AS stopped_streams,
                                   sum(behind.events)                                              AS events_behind,
                                   min(behind.oldest)                                              AS oldest_unacked_at
                            FROM locks l
                                     CROSS JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
                                                         FROM events e
                                                         WHERE e.decider_id = l.decider_id
                                                           AND e."offset" > l.last_offset) behind
                            WHERE l.view = v.view
                              AND l.last_offset < l."offset") p ON true
ORDER BY v.view;
$view_status$;
--> statement-breakpoint
-- Optional wake-ups: after a transaction appends events, one notification on channel fstore_events lets listening
-- workers poll at once instead of at their next polling tick. PostgreSQL folds identical notifications of one
-- transaction into one. NOTIFY serialises commits (a database-wide lock at commit), so it is off until
-- set_wakeups(true); YugabyteDB and poolers in transaction mode do without it, and workers keep polling anyway.
CREATE OR REPLACE FUNCTION notify_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$notify_events_appended$
BEGIN
    PERFORM pg_notify('fstore_events', '');
    RETURN NULL;
END;
$notify_events_appended$;
--> statement-breakpoint
-- API: turn wake-ups on or off (creates or drops the statement trigger). Returns whether they are on.
-- Example: SELECT set_wakeups(true);
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
--> statement-breakpoint
-- API: the holder of several leases of one view acknowledges each stream up to its offset and releases them, in the
-- caller's transaction, all or nothing: if any lease is no longer held (or an offset is not an event of its
-- stream), it raises 55P03 locks_lease_held and the caller's transaction must roll back; ack_events then tells
-- which stream it was. v_acks is a JSON array of {"decider_id", "lease_id", "offset"} (JSON, like append_events'
-- batch: any stream id travels unchanged, whatever the driver).
-- Example: SELECT ack_leases('view1', '[{"decider_id": "s1", "lease_id": "…", "offset": 41}]');
CREATE OR REPLACE FUNCTION ack_leases(v_view text, v_acks jsonb)
    RETURNS integer
    LANGUAGE plpgsql AS
$ack_leases$
DECLARE
    v_count    integer;
    v_expected integer;
BEGIN
    IF v_view IS NULL OR v_acks IS NULL OR jsonb_typeof(v_acks) <> 'array' THEN
        RAISE EXCEPTION 'ack_leases: a view and a JSON array of acknowledgements must be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_expected := jsonb_array_length(v_acks);
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, x.ack_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    FROM (SELECT a ->> 'decider_id' AS decider_id, (a ->> 'lease_id')::uuid AS lease_id,
                 (a ->> 'offset')::bigint AS ack_offset
          FROM jsonb_array_elements(v_acks) AS a) x
    WHERE l.view = v_view
      AND l.decider_id = x.decider_id
      AND l.lease_id = x.lease_id
      AND EXISTS (SELECT 1 FROM events e WHERE e."offset" = x.ack_offset AND e.decider_id = x.decider_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count <> v_expected THEN
        RAISE EXCEPTION 'ack_leases: % of % leases of view % are no longer held (or an offset is not in its stream)',
            v_expected - v_count, v_expected, v_view
            USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held';
    END IF;
    RETURN v_count;
END;
$ack_leases$;
