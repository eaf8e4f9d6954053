-- Custom SQL migration: lease_events refuses a view that is not registered (P0002, as reset_view does), instead
-- of leasing nothing for ever. The function is otherwise as in 0004_projection_workers.sql; replacing it resets
-- SECURITY DEFINER and the search_path where packages/schema/sql/least-privilege.sql was applied: run that script
-- again after this migration, as after every upgrade.

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
