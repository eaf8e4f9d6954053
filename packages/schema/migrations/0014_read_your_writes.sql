-- Custom SQL migration: read-your-writes. A caller that appended an event (a stream and its offset) can ask whether
-- a view has handled it yet, and wait for it.
-- API: how far a view has come with one stream, up to one of its events: 'handled' once the view has handled every
-- event of the stream up to v_offset that it projects (or passed it over: another type, or created before start_at),
-- 'pending' until then, and 'parked' when that event is parked, or an earlier one of the stream stopped it
-- (parked_offset and parked_error name it; the wait would never end). A view that does not exist, an offset that is
-- not the stream's, and a stream whose decider the view does not subscribe to are errors, not a wait for ever.
-- It reads the stream's lock row, its parked events, the view's frontier and the stream's events from its lock row
-- on: its cost does not grow with the view. Example: SELECT * FROM view_reached('view1', 'f156a3c4-…', 42);
CREATE OR REPLACE FUNCTION view_reached(v_view text, v_decider_id text, v_offset bigint)
    RETURNS TABLE (state text, parked_offset bigint, parked_error text)
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = pg_catalog, public, pg_temp AS
$view_reached$
DECLARE
    v_view_row views;
    v_event    events;
    v_frontier view_frontiers;
    v_lock     locks;
    v_parked   parked_events;
BEGIN
    IF v_decider_id IS NULL OR v_offset IS NULL THEN
        RAISE EXCEPTION 'view_reached: the stream and the offset must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'view_reached: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO v_event FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'view_reached: stream % has no event at offset %', v_decider_id, v_offset
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'events_pkey';
    END IF;
    IF v_view_row.subscribed_deciders IS NOT NULL AND NOT (v_event.decider = ANY (v_view_row.subscribed_deciders)) THEN
        RAISE EXCEPTION 'view_reached: view % does not subscribe to decider % (stream %)', v_view, v_event.decider,
            v_decider_id
            USING ERRCODE = 'invalid_parameter_value', CONSTRAINT = 'views_subscription';
    END IF;
    -- The event itself parked, or an earlier one that stopped the stream: nothing will reach it until an operator
    -- retries or discards (a parked event the stream went on past does not hold later ones).
    SELECT *
    INTO v_parked
    FROM parked_events p
    WHERE p.view = v_view
      AND p.decider_id = v_decider_id
      AND p."offset" <= v_offset
      AND (p."offset" = v_offset OR p.stream_stopped)
    ORDER BY p."offset"
    LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT 'parked'::text, v_parked."offset", v_parked.error;
        RETURN;
    END IF;
    -- Past the frontier, no consumer has read it yet. (No frontier row: YugabyteDB's profile, whose frontier stands
    -- past every transaction.)
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view;
    IF FOUND AND (v_event.transaction_id, v_event."offset") > (v_frontier.transaction_id, v_frontier."offset") THEN
        RETURN QUERY SELECT 'pending'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- Read by a consumer: handled unless the stream's lock row has events it projects still to handle, up to this
    -- one. (No lock row: a log batch took the stream whole, so everything up to the frontier is handled.)
    SELECT * INTO v_lock FROM locks l WHERE l.view = v_view AND l.decider_id = v_decider_id;
    IF FOUND AND EXISTS (SELECT 1
                         FROM events e
                         WHERE e.decider_id = v_decider_id
                           AND e."offset" > v_lock.last_offset
                           AND e."offset" <= v_offset
                           AND e.created_at >= v_view_row.start_at
                           AND (v_view_row.subscribed_deciders IS NULL
                             OR e.decider = ANY (v_view_row.subscribed_deciders))
                           AND (v_view_row.subscribed_events IS NULL
                             OR e.event = ANY (v_view_row.subscribed_events))) THEN
        RETURN QUERY SELECT 'pending'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'handled'::text, NULL::bigint, NULL::text;
END;
$view_reached$;
--> statement-breakpoint
-- API: view_reached, waiting up to v_timeout_ms (default 10 s) for the view to get there: returns as soon as the
-- state is 'handled' or 'parked', or 'pending' at the timeout. For psql users; it holds its session while it waits
-- (the TypeScript waitForView shares one poll among all its waiters instead). Each look is a statement of its own,
-- with a snapshot of its own: under REPEATABLE READ or SERIALIZABLE it would never see the view move, so it refuses.
-- Example: SELECT * FROM wait_for_view('view1', 'f156a3c4-…', 42, 5000);
CREATE OR REPLACE FUNCTION wait_for_view(v_view text, v_decider_id text, v_offset bigint, v_timeout_ms int DEFAULT 10000)
    RETURNS TABLE (state text, parked_offset bigint, parked_error text)
    LANGUAGE plpgsql
    VOLATILE
    SET search_path = pg_catalog, public, pg_temp AS
$wait_for_view$
DECLARE
    v_until   timestamptz;
    v_reached record;
    v_pause   float8 := 0.002;
BEGIN
    IF v_timeout_ms IS NULL OR v_timeout_ms < 0 THEN
        RAISE EXCEPTION 'wait_for_view: the timeout must be zero or more milliseconds, got %', v_timeout_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'wait_for_view: call it under READ COMMITTED: under % its snapshot never sees the view move',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    v_until := clock_timestamp() + make_interval(secs => v_timeout_ms / 1000.0);
    LOOP
        SELECT * INTO v_reached FROM view_reached(v_view, v_decider_id, v_offset);
        IF v_reached.state <> 'pending' OR clock_timestamp() >= v_until THEN
            RETURN QUERY SELECT v_reached.state, v_reached.parked_offset, v_reached.parked_error;
            RETURN;
        END IF;
        -- From 2 ms, doubling up to 50 ms: quick for a worker that is right behind, light for one that is not.
        PERFORM pg_sleep(least(v_pause, greatest(extract(epoch FROM v_until - clock_timestamp()), 0)));
        v_pause := least(v_pause * 2, 0.05);
    END LOOP;
END;
$wait_for_view$;
