-- Custom SQL migration: the event-streaming half of the fstore-sql API (views, locks, leasing, acknowledgements).
-- One statement per chunk, as in the event-sourcing migration.

-- Keep views.updated_at honest for direct UPDATEs too. (locks.updated_at is set by the functions that write locks:
-- a trigger there would run on every lease and acknowledgement, the hottest path of streaming.)
CREATE OR REPLACE FUNCTION before_update_views_table() RETURNS trigger
    LANGUAGE plpgsql AS
$before_update_views_table$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$before_update_views_table$;
--> statement-breakpoint
-- The one row of view_registration_gate orders view registrations against appends. Without it, an append in
-- flight while a view registered could be missed by both: the registration's read of the log did not see the
-- uncommitted event, and the append's trigger did not see the uncommitted view, so that stream had no lock row (or a
-- stale head) for the view until its next append (src/bad-input.test.ts, "views registered while appends run").
-- Appending statements lock the row FOR SHARE (many at once, no waiting among them); a registration takes a queued
-- table lock and updates it (waiting for the appends in flight, holding back new ones). Row and table locks, not
-- advisory locks, which YugabyteDB lacks before 2025.1. Under REPEATABLE READ, an append that raced a registration
-- gets a serialization failure (40001), to retry.
INSERT INTO view_registration_gate (id, generation) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
--> statement-breakpoint
CREATE TRIGGER t_before_update_views_table
    BEFORE UPDATE
    ON views
    FOR EACH ROW
EXECUTE FUNCTION before_update_views_table();
--> statement-breakpoint
-- After an append, every view gets (or advances) the lock row of the event's stream: its head moves to the newest
-- offset and the stream shows up as pending for that view. New rows start unleased and unread (last_offset 0).
-- It runs once per statement, over the statement's new rows: a statement that appends many events to one stream
-- (append_events, a bulk import) updates each lock row once. Row by row, it would update the same row once per
-- event, and each update must walk the row's ever longer chain of versions: quadratic in the batch.
CREATE OR REPLACE FUNCTION on_insert_on_events() RETURNS trigger
    LANGUAGE plpgsql AS
$on_insert_on_events$
BEGIN
    -- Wait for a view registration in progress, then see its view (this is a new statement, with a new snapshot).
    PERFORM 1 FROM view_registration_gate g WHERE g.id = 1 FOR SHARE;
    INSERT INTO locks (view, decider_id, "offset", last_offset, locked_until, offset_final)
    SELECT v.view, n.decider_id, max(n."offset"), 0, now(), bool_or(n.final)
    FROM new_events n
             CROSS JOIN views v
    GROUP BY v.view, n.decider_id
    ON CONFLICT ON CONSTRAINT locks_pkey DO UPDATE
        SET "offset"     = greatest(locks."offset", EXCLUDED."offset"),
            offset_final = locks.offset_final OR EXCLUDED.offset_final,
            updated_at   = now();
    RETURN NULL;
END;
$on_insert_on_events$;
--> statement-breakpoint
CREATE TRIGGER t_on_insert_on_events
    AFTER INSERT
    ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT
EXECUTE FUNCTION on_insert_on_events();
--> statement-breakpoint
-- Where a view reads each stream from: a lock row per existing stream, positioned just before the stream's first
-- event created at or after start_at, or, when the stream has none, at its head (nothing to read yet). Leases,
-- failure counts and parked events of the view are cleared: this is a rebuild from start_at. It scans the log
-- once; it runs when a view is registered or its start_at changes, and from reset_view.
CREATE OR REPLACE FUNCTION reset_view_positions(v_view text, v_start_at timestamp) RETURNS void
    LANGUAGE plpgsql AS
$reset_view_positions$
BEGIN
    -- Wait for appends in flight to commit (they hold the gate FOR SHARE) and hold back new ones until this
    -- registration commits: the read of the log below then sees every event whose append did not see the view.
    -- The table lock comes first because row locks are not queued: with appends always in flight, new FOR SHARE
    -- lockers would keep joining the current ones and the UPDATE would wait for ever. A table lock request is
    -- queued, and new appends wait behind it. (Where LOCK TABLE is not supported, the row lock alone still orders
    -- registrations and appends, without that guarantee of progress.)
    BEGIN
        LOCK TABLE view_registration_gate IN EXCLUSIVE MODE;
    EXCEPTION
        WHEN feature_not_supported THEN NULL;
    END;
    UPDATE view_registration_gate g SET generation = g.generation + 1 WHERE g.id = 1;
    INSERT INTO locks (view, decider_id, "offset", last_offset, locked_until, offset_final)
    SELECT v_view,
           s.decider_id,
           s.head,
           coalesce(s.first_to_read - 1, s.head),
           now(),
           s.final
    FROM (SELECT e.decider_id,
                 max(e."offset")                                         AS head,
                 min(e."offset") FILTER (WHERE e.created_at >= v_start_at) AS first_to_read,
                 bool_or(e.final)                                        AS final
          FROM events e
          GROUP BY e.decider_id) s
    ON CONFLICT ON CONSTRAINT locks_pkey DO UPDATE
        SET "offset"     = EXCLUDED."offset",
            last_offset  = EXCLUDED.last_offset,
            offset_final = EXCLUDED.offset_final,
            locked_until = now(),
            lease_id     = NULL,
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now();
    DELETE FROM parked_events p WHERE p.view = v_view;
END;
$reset_view_positions$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION on_insert_or_update_on_views() RETURNS trigger
    LANGUAGE plpgsql AS
$on_insert_or_update_on_views$
BEGIN
    PERFORM reset_view_positions(NEW.view, NEW.start_at);
    RETURN NULL;
END;
$on_insert_or_update_on_views$;
--> statement-breakpoint
CREATE TRIGGER t_on_insert_on_views
    AFTER INSERT
    ON views
    FOR EACH ROW
EXECUTE FUNCTION on_insert_or_update_on_views();
--> statement-breakpoint
-- Re-registering with the same start_at (for example at every start-up) keeps the view's progress.
CREATE TRIGGER t_on_update_of_start_at_on_views
    AFTER UPDATE OF start_at
    ON views
    FOR EACH ROW
    WHEN (OLD.start_at IS DISTINCT FROM NEW.start_at)
EXECUTE FUNCTION on_insert_or_update_on_views();
--> statement-breakpoint
-- API: register a view, or update it. This is the later fstore-sql form: delays in seconds.
-- Example: SELECT * FROM register_view('view1', '2023-01-28 12:17:17.078384', 300, 1);
CREATE OR REPLACE FUNCTION register_view(v_view text,
                                         v_start_at timestamp DEFAULT now(),
                                         v_lock_timeout_s bigint DEFAULT 300,
                                         v_pooling_delay_s bigint DEFAULT NULL,
                                         v_edge_function_url text DEFAULT NULL)
    RETURNS SETOF views
    LANGUAGE plpgsql AS
$register_view$
BEGIN
    RETURN QUERY INSERT INTO views AS v (view, start_at, lock_timeout_s, pooling_delay_s, pooling_delay_ms,
                                         edge_function_url)
        VALUES (v_view, v_start_at, v_lock_timeout_s, v_pooling_delay_s, v_pooling_delay_s * 1000, v_edge_function_url)
        ON CONFLICT (view) DO UPDATE
            SET start_at          = EXCLUDED.start_at,
                lock_timeout_s    = EXCLUDED.lock_timeout_s,
                pooling_delay_s   = EXCLUDED.pooling_delay_s,
                pooling_delay_ms  = EXCLUDED.pooling_delay_ms,
                edge_function_url = EXCLUDED.edge_function_url
        RETURNING v.*;
END;
$register_view$;
--> statement-breakpoint
-- API: register a view, or update it (the README's form): pooling_delay in milliseconds, kept exactly in
-- pooling_delay_ms; pooling_delay_s holds it rounded up to whole seconds for clients of the seconds column.
-- Example: SELECT * FROM register_view('view1', 500, '2023-01-28 12:17:17.078384');
CREATE OR REPLACE FUNCTION register_view(v_view text, v_pooling_delay bigint, v_start_at timestamp)
    RETURNS SETOF views
    LANGUAGE plpgsql AS
$register_view_ms$
BEGIN
    RETURN QUERY INSERT INTO views AS v (view, start_at, pooling_delay_s, pooling_delay_ms)
        VALUES (v_view, v_start_at, (v_pooling_delay + 999) / 1000, v_pooling_delay)
        ON CONFLICT (view) DO UPDATE
            SET start_at         = EXCLUDED.start_at,
                pooling_delay_s  = EXCLUDED.pooling_delay_s,
                pooling_delay_ms = EXCLUDED.pooling_delay_ms
        RETURNING v.*;
END;
$register_view_ms$;
--> statement-breakpoint
-- API: lease up to v_limit streams of a view that have unread events, for v_seconds, and return the next unread
-- event of each, in offset order. Streams leased by another consumer are skipped (FOR UPDATE SKIP LOCKED), so any
-- number of consumers can call this concurrently; an expired lease makes its event deliverable again.
-- A lease ends at locked_until itself (<=): ack_event sets it to now(), the transaction's start time, and the next
-- call may well run in the same clock tick.
-- Streams are taken least recently served first (locked_until, then offset): a busy stream cannot starve the
-- others. The candidates come from locks_pending_idx, which holds only streams with unread events, so a call
-- costs the same with a thousand streams or a million; PL/pgSQL keeps the plan.
-- Example: SELECT * FROM stream_events('view1');  SELECT * FROM stream_events('view1', 100, 300);
CREATE OR REPLACE FUNCTION stream_events(v_view_name text, v_limit int DEFAULT 1, v_seconds int DEFAULT 300)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$stream_events$
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'stream_events: limit must be zero or more, got %', v_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_seconds IS NULL OR v_seconds < 1 THEN
        RAISE EXCEPTION 'stream_events: lock seconds must be one or more, got %', v_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
        WITH candidates AS (SELECT l.view, l.decider_id
                            FROM locks l
                            WHERE l.view = v_view_name
                              AND l.last_offset < l."offset"
                              AND l.locked_until <= now()
                            ORDER BY l.locked_until, l."offset"
                            LIMIT v_limit FOR UPDATE SKIP LOCKED),
             leased AS (UPDATE locks l
                 SET locked_until = now() + make_interval(secs => v_seconds),
                     updated_at = now()
                 FROM candidates c
                 WHERE l.view = c.view
                   AND l.decider_id = c.decider_id
                 RETURNING l.decider_id, l.last_offset)
        SELECT e.*
        FROM leased
                 CROSS JOIN LATERAL (SELECT *
                                     FROM events ev
                                     WHERE ev.decider_id = leased.decider_id
                                       AND ev."offset" > leased.last_offset
                                     ORDER BY ev."offset"
                                     LIMIT 1) e
        ORDER BY e."offset";
END;
$stream_events$;
--> statement-breakpoint
-- API: acknowledge that the view handled the stream's events up to v_offset: move its read position there and
-- release the lease. The offset must be an event of that stream. The position never moves backwards, so a late
-- acknowledgement (from a consumer whose lease expired and was taken over) cannot make events run twice.
-- Example: SELECT * FROM ack_event('view1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', 1);
CREATE OR REPLACE FUNCTION ack_event(v_view text, v_decider_id text, v_offset bigint)
    RETURNS SETOF locks
    LANGUAGE plpgsql AS
$ack_event$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id) THEN
        RAISE EXCEPTION 'ack_event: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY UPDATE locks l
        SET locked_until = now(),
            last_offset  = greatest(l.last_offset, v_offset),
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$ack_event$;
--> statement-breakpoint
-- API: release the stream's lease without moving its position: its next unread event is delivered again.
-- Example: SELECT * FROM nack_event('view1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002');
CREATE OR REPLACE FUNCTION nack_event(v_view text, v_decider_id text)
    RETURNS SETOF locks
    LANGUAGE plpgsql AS
$nack_event$
BEGIN
    RETURN QUERY UPDATE locks l
        SET locked_until = now(),
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$nack_event$;
--> statement-breakpoint
-- API: release the stream's lease after v_milliseconds, to retry a failed event later (a backoff).
-- Example: SELECT * FROM schedule_nack_event('view1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', 10000);
CREATE OR REPLACE FUNCTION schedule_nack_event(v_view text, v_decider_id text, v_milliseconds bigint)
    RETURNS SETOF locks
    LANGUAGE plpgsql AS
$schedule_nack_event$
BEGIN
    IF v_milliseconds IS NULL OR v_milliseconds < 0 THEN
        RAISE EXCEPTION 'schedule_nack_event: milliseconds must be zero or more, got %', v_milliseconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY UPDATE locks l
        SET locked_until = now() + v_milliseconds * interval '1 millisecond',
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$schedule_nack_event$;
