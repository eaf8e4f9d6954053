-- Custom SQL migration: a lease records the last offset it delivered (locks.leased_to, added by 0005), and its holder
-- can acknowledge (ack_events, ack_leases) or report as failed (fail_event) no event past it. Before, an offset of
-- the stream beyond the lease was accepted, and the events in between were skipped without being delivered. And
-- lease_events refuses a view that is not registered (P0002, as reset_view does) instead of leasing nothing for
-- ever. The four functions are otherwise as in 0004; where packages/schema/sql/least-privilege.sql was applied, run
-- it again after this migration, as after every upgrade. fstore-sql's stream_events and ack_event are unchanged.

-- Raised when the holder of a lease acknowledges or fails an event past the last one its lease delivered: events in
-- between would be skipped without any handler having seen them. Does nothing when the offset is within the lease,
-- when the lease is not held (the caller then raises lease lost), or when the lease predates leased_to (taken
-- before this migration: it is acknowledged as before).
CREATE OR REPLACE FUNCTION raise_beyond_lease(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint)
    RETURNS void
    LANGUAGE plpgsql AS
$raise_beyond_lease$
DECLARE
    v_leased_to bigint;
BEGIN
    SELECT l.leased_to INTO v_leased_to
    FROM locks l
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    IF v_offset > v_leased_to THEN
        RAISE EXCEPTION 'offset % of stream % is past the last event lease % delivered (%)', v_offset, v_decider_id,
            v_lease_id, v_leased_to
            USING ERRCODE = 'invalid_parameter_value', CONSTRAINT = 'locks_within_lease',
                  HINT = 'Acknowledge the last event you handled: the ones after it have not been delivered.';
    END IF;
END;
$raise_beyond_lease$;
--> statement-breakpoint
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
    -- A view that does not exist (a typo, or one deleted while its workers run) is an error, not an empty lease
    -- for ever: a worker polling it would otherwise look idle. (stream_events keeps fstore-sql's empty answer.)
    IF NOT EXISTS (SELECT 1 FROM views v WHERE v.view = v_view) THEN
        RAISE EXCEPTION 'lease_events: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    -- The lease records the last offset it delivers (leased_to), read from the index on (decider_id, offset)
    -- before the rows: its holder can then acknowledge no further than what it was given.
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
                     leased_to = (SELECT max(d."offset")
                                  FROM (SELECT ev."offset"
                                        FROM events ev
                                        WHERE ev.decider_id = l.decider_id
                                          AND ev."offset" > l.last_offset
                                        ORDER BY ev."offset"
                                        LIMIT v_events_per_stream) d),
                     updated_at = now()
                 FROM candidates c
                 WHERE l.view = c.view
                   AND l.decider_id = c.decider_id
                 RETURNING l.decider_id, l.last_offset, l.leased_to, l.lease_id, l.attempts)
        SELECT leased.lease_id, leased.attempts, e.*
        FROM leased
                 CROSS JOIN LATERAL (SELECT *
                                     FROM events ev
                                     WHERE ev.decider_id = leased.decider_id
                                       AND ev."offset" > leased.last_offset
                                       AND ev."offset" <= leased.leased_to
                                     ORDER BY ev."offset") e
        ORDER BY e."offset";
END;
$lease_events$;
--> statement-breakpoint
-- API: the holder of a lease acknowledges the stream's events up to v_offset (an event of that stream that the lease
-- delivered: an offset past what lease_events handed out would skip events nobody handled, and is refused), and
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
      AND (l.leased_to IS NULL OR v_offset <= l.leased_to)
    RETURNING l.* INTO v_lock;
    IF NOT FOUND THEN
        PERFORM raise_beyond_lease(v_view, v_decider_id, v_lease_id, v_offset);
        PERFORM raise_lease_lost(v_view, v_decider_id, v_lease_id);
    END IF;
    RETURN NEXT v_lock;
END;
$ack_events$;
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
      AND (l.leased_to IS NULL OR v_offset <= l.leased_to)
    RETURNING l.attempts INTO v_attempts;
    IF NOT FOUND THEN
        PERFORM raise_beyond_lease(v_view, v_decider_id, v_lease_id, v_offset);
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
-- API: the holder of several leases of one view acknowledges each stream up to its offset and releases them, in the
-- caller's transaction, all or nothing: if any lease is no longer held (or an offset is not an event of its
-- stream that the lease delivered), it raises 55P03 locks_lease_held and the caller's transaction must roll back;
-- ack_events then tells which stream it was. v_acks is a JSON array of {"decider_id", "lease_id", "offset"} (JSON, like append_events'
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
      AND (l.leased_to IS NULL OR x.ack_offset <= l.leased_to)
      AND EXISTS (SELECT 1 FROM events e WHERE e."offset" = x.ack_offset AND e.decider_id = x.decider_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count <> v_expected THEN
        RAISE EXCEPTION 'ack_leases: % of % leases of view % are no longer held (or an offset is not one they delivered)',
            v_expected - v_count, v_expected, v_view
            USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held';
    END IF;
    RETURN v_count;
END;
$ack_leases$;
