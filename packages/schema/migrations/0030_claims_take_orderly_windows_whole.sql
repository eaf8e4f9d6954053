-- Custom SQL migration: claims take an orderly window whole, without checking its streams one by one (issue 11,
-- S1 and C1). Of a claim's time on the database, two thirds went to one statement that sorts the window by stream
-- to check that each stream's events follow one another (a 4,000-event claim: 12 of 17 ms). When no event of a
-- window stream at or above the window's lowest offset is out of order (0029 indexes out_of_order_events by offset
-- for that question), no window stream has a lock row that is not held, and nothing in the window was created
-- before start_at, every stream passes those checks (the comment in the body says why), so claim_log_batch skips
-- them. Other windows are judged as before. The rest is 0028's body.
-- CREATE OR REPLACE keeps the function's owner and grants.
CREATE OR REPLACE FUNCTION claim_log_batch(v_view text, v_max_events int DEFAULT 1000)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    -- Planned for each call, as the leases: a generic plan cannot see how narrow the window's range is.
    SET plan_cache_mode = force_custom_plan
    -- Every look here goes through an index, whatever the statistics say of the lock rows (see read_into_lock_rows).
    SET enable_seqscan = off AS
$claim_log_batch$
DECLARE
    v_view_row  views;
    v_frontier  view_frontiers;
    v_horizon   xid8;
    v_end_xid   xid8;
    v_end       bigint;
    v_direct    text[];
    v_streams   bigint;
    v_held      jsonb;
    v_marked    bigint[];
    v_rows      jsonb;
    v_free      text[];
    v_lowest    bigint;
    v_orderly   boolean;
    v_unordered text[];
BEGIN
    IF v_max_events IS NULL OR v_max_events < 1 THEN
        RAISE EXCEPTION 'claim_log_batch: max events must be one or more, got %', v_max_events
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- On its own (autocommit), the statement that returns the events would also commit them as handled.
    IF transaction_timestamp() = statement_timestamp() THEN
        RAISE EXCEPTION 'claim_log_batch: call it inside a transaction (BEGIN; ... COMMIT;) that handles the events it returns'
            USING ERRCODE = 'no_active_sql_transaction';
    END IF;
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'claim_log_batch: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    -- Looks without a lock first, as advance_view does: an idle consumer must not write the frontier row.
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view;
    PERFORM 1
    FROM events e
    WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
    ORDER BY e.transaction_id, e."offset"
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_horizon := log_horizon();
    PERFORM 1
    FROM events e
    WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
      AND e.transaction_id < v_horizon
    ORDER BY e.transaction_id, e."offset"
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- The frontier row, held until the caller's transaction ends: no other consumer advances the view meanwhile.
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        -- Ended events wait past the frontier and another consumer is taking them: says so to the caller, who can
        -- leave the frontier to it for a while rather than take it over between two of its batches.
        PERFORM set_config('fstore.log_batch_held', 'true', true);
        RETURN;
    END IF;
    -- The window: up to v_max_events events past the frontier, of ended transactions (an index-only range), and
    -- its lowest offset.
    SELECT w.transaction_id, w."offset", w.lowest
    INTO v_end_xid, v_end, v_lowest
    FROM (SELECT r.transaction_id, r."offset", min(r."offset") OVER () AS lowest
          FROM (SELECT e.transaction_id, e."offset"
                FROM events e
                WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                  AND e.transaction_id < v_horizon
                ORDER BY e.transaction_id, e."offset"
                LIMIT v_max_events) r) w
    ORDER BY w.transaction_id DESC, w."offset" DESC
    LIMIT 1;
    IF v_end IS NULL THEN
        RETURN;
    END IF;
    -- Which of the window's streams can be taken. Their lock row must be free: none yet, or one with nothing
    -- unhandled and no lease, which this takes (in decider_id order, as every writer of many lock rows does) and
    -- holds to the end of the transaction; rows with work pending are left to their leases, whose holders must not
    -- wait for this transaction. Of their events in the window, those at or below the row's last_offset were
    -- handled already (a lease reads a stream by offset, ahead of the frontier) and are passed over; the others must
    -- follow one another along previous_id from an event handled or passed before (so that none is missing: a
    -- transaction may commit a stream's later event under a lower transaction id), come in offset order in the log
    -- (the batch hands them over in log order), and have those created before start_at (passed over, as
    -- advance_view does) before the rest.
    -- The window's streams that have a lock row, whatever its state (v_rows), read once: a stream with one that is
    -- not held below keeps its lease. Only frontier holders create lock rows, so none appears meanwhile.
    SELECT coalesce(jsonb_object_agg(l.decider_id, true), '{}'),
           coalesce(array_agg(l.decider_id) FILTER (WHERE l.last_offset = l."offset" AND l.locked_until <= now()), '{}')
    INTO v_rows, v_free
    FROM locks l
    WHERE l.view = v_view
      AND l.decider_id IN (SELECT e.decider_id
                           FROM events e
                           WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                             AND (e.transaction_id, e."offset") <= (v_end_xid, v_end));
    -- Of those, the free ones, locked and held to the end of the transaction (their state checked again under the
    -- lock: a lease or an acknowledgement may have taken one since).
    v_held := '{}';
    IF cardinality(v_free) > 0 THEN
        SELECT coalesce(jsonb_object_agg(h.decider_id, h.last_offset), '{}')
        INTO v_held
        FROM (SELECT l.decider_id, l.last_offset
              FROM locks l
              WHERE l.view = v_view
                AND l.decider_id = ANY (v_free)
                AND l.last_offset = l."offset"
                AND l.locked_until <= now()
              ORDER BY l.decider_id
              FOR NO KEY UPDATE SKIP LOCKED) h;
    END IF;
    -- An orderly window (migration 0030): no event of a window stream at or above the window's lowest offset came
    -- before its previous event in the log (out_of_order_events), every window stream that has a lock row is held
    -- above, and no window event was created before start_at. Then every stream of the window passes the
    -- per-stream checks below, which sort the window by stream (two thirds of a claim's time), so they are skipped:
    -- - a stream's offsets increase along previous_id (the append trigger), so its window events in offset order
    --   name one another, unless the previous event p of one of them, e, lies outside the window. If p is past the
    --   window, e comes before p in the log and is marked; if p is at or behind the frontier, the window event
    --   before e precedes p along previous_id but follows it in the log, so some event between them (offset above
    --   the window's lowest) is marked. Neither is, so they name one another, each after the one before it in the
    --   log (else it would be marked);
    -- - a stream's first window event is not marked, so its previous event is at or behind the frontier: handled;
    -- - with no event from before start_at, none follows one from after it.
    -- The streams of the events at or above the window's lowest offset that are out of order: usually none.
    WITH marks AS MATERIALIZED (SELECT o."offset" FROM out_of_order_events o WHERE o."offset" >= v_lowest)
    SELECT coalesce(array_agg(m.decider_id), '{}')
    INTO v_unordered
    FROM marks
             JOIN events m ON m."offset" = marks."offset";
    v_orderly := (cardinality(v_unordered) = 0
        OR NOT EXISTS (SELECT 1
                       FROM events e
                       WHERE e.decider_id = ANY (v_unordered)
                         AND e."offset" >= v_lowest
                         AND (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                         AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
                         AND (v_view_row.subscribed_deciders IS NULL
                           OR e.decider = ANY (v_view_row.subscribed_deciders))))
        AND (SELECT count(*) FROM jsonb_object_keys(v_rows)) = (SELECT count(*) FROM jsonb_object_keys(v_held))
        AND NOT EXISTS (SELECT 1
                        FROM events e
                        WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                          AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
                          AND e.created_at < v_view_row.start_at);
    IF NOT v_orderly THEN
        -- The window's events that come before their previous event in the log (out_of_order_events, usually none).
        SELECT coalesce(array_agg(o."offset"), '{}')
        INTO v_marked
        FROM out_of_order_events o
        WHERE (o.transaction_id, o."offset") > (v_frontier.transaction_id, v_frontier."offset")
          AND (o.transaction_id, o."offset") <= (v_end_xid, v_end);
        -- The held rows are looked up in that map, not joined: the planner takes a range inside one transaction for
        -- a row or two, and a nested loop over a thousand held rows per event cost 100 ms a batch.
        -- One sort of the window, by stream and offset. Each event is compared with the one before it in its
        -- stream: it must name it as its previous, come after it in the log (a transaction id no lower: the offsets
        -- already increase), and not be from before start_at when that one is not.
        WITH fresh AS (SELECT e.decider_id, e.previous_id, e.transaction_id, e."offset", e.created_at,
                              (v_held ->> e.decider_id)::bigint AS handled_to,
                              lag(e.event_id) OVER by_offset       AS before_id,
                              lag(e.transaction_id) OVER by_offset AS before_xid,
                              lag(e.created_at) OVER by_offset     AS before_created
                       FROM events e
                       WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                         AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
                         AND (v_view_row.subscribed_deciders IS NULL
                           OR e.decider = ANY (v_view_row.subscribed_deciders))
                         AND e."offset" > coalesce((v_held ->> e.decider_id)::bigint, 0)
                       WINDOW by_offset AS (PARTITION BY e.decider_id ORDER BY e."offset")),
             streams AS (SELECT f.decider_id,
                                max(f.handled_to)                                                 AS handled_to,
                                -- The stream's first event of the window: its one row without a before_id.
                                (array_agg(f.previous_id) FILTER (WHERE f.before_id IS NULL))[1] AS first_previous,
                                (array_agg(f."offset") FILTER (WHERE f.before_id IS NULL))[1]    AS first_offset,
                                bool_and(f.before_id IS NULL
                                    OR (f.previous_id = f.before_id
                                        AND f.before_xid <= f.transaction_id
                                        AND NOT (f.before_created >= v_view_row.start_at
                                            AND f.created_at < v_view_row.start_at)))             AS orderly
                         FROM fresh f
                         GROUP BY f.decider_id),
             judged AS (SELECT s.decider_id,
                               s.orderly
                                   AND (s.handled_to IS NOT NULL
                                       OR NOT (v_rows ? s.decider_id))
                                   -- Its first event's previous one was handled: a stream's first event in the
                                   -- window that is not out of order comes after its previous one in the log, and
                                   -- that one is not in the window (the first would be) or is at or below handled_to,
                                   -- so it is handled; only the out-of-order ones need it looked up.
                                   AND (s.first_previous IS NULL
                                       OR s.first_offset <> ALL (v_marked)
                                       OR EXISTS (SELECT 1
                                                  FROM events p
                                                  WHERE p.event_id = s.first_previous
                                                    AND (p."offset" <= s.handled_to
                                                      OR (p.transaction_id, p."offset")
                                                             <= (v_frontier.transaction_id, v_frontier."offset"))))
                                   AS direct
                        FROM streams s)
        SELECT coalesce(array_agg(j.decider_id) FILTER (WHERE j.direct), '{}'), count(*)
        INTO v_direct, v_streams
        FROM judged j;
        -- The other streams of the window go on through their leases: their events are read into their lock rows
        -- as advance_view reads them (waiting for a row an acknowledgement holds, in the same decider_id order), so
        -- that the batch takes the whole window instead of stopping in front of them.
        -- It reads no stream that was judged (those are all the window's streams it could read), so when every one
        -- is taken there is nothing for it to do: a window of free streams, as a catch-up reads, skips a pass over it.
        IF cardinality(v_direct) < v_streams THEN
            PERFORM read_into_lock_rows(v_view, v_frontier.transaction_id, v_frontier."offset", v_end_xid, v_end,
                                        v_direct, v_held);
        END IF;
    END IF;
    -- The events to handle (read before the lock rows move past them): those of the taken streams in the window,
    -- past what their lock rows say was handled, of the subscribed types, created from start_at on.
    -- The window is read by its range, in log order, then filtered (OFFSET 0 keeps the filters out of that read).
    -- Left to itself, the planner guessed a third of the log for a range that starts at the log's beginning, and
    -- looked every event of the taken streams up by stream instead: ten times the window's rows, 30 ms of a
    -- 4,000-event claim.
    RETURN QUERY
        SELECT w.*
        FROM (SELECT e.*
              FROM events e
              WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
              ORDER BY e.transaction_id, e."offset"
              OFFSET 0) w
        -- v_direct is null for an orderly window: every stream of it is taken.
        WHERE (v_direct IS NULL OR w.decider_id = ANY (v_direct))
          AND (v_view_row.subscribed_deciders IS NULL OR w.decider = ANY (v_view_row.subscribed_deciders))
          AND (v_view_row.subscribed_events IS NULL OR w.event = ANY (v_view_row.subscribed_events))
          AND w.created_at >= v_view_row.start_at
          AND w."offset" > coalesce((v_held ->> w.decider_id)::bigint, 0)
        ORDER BY w.transaction_id, w."offset";
    -- The taken streams that have a lock row, handled up to their last event of the batch once the caller commits.
    -- Those without one get none: no row means handled up to the frontier (advance_view starts a new row there),
    -- so a stream taken whole costs no write of its own (and a batch that holds no row skips this statement).
    IF v_held <> '{}' THEN
        UPDATE locks l
        SET "offset"     = greatest(l."offset", s.head),
            last_offset  = greatest(l.last_offset, s.head),
            offset_final = l.offset_final OR s.final,
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        FROM (SELECT e.decider_id, max(e."offset") AS head, bool_or(e.final) AS final
              FROM events e
              WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
                AND (v_direct IS NULL OR e.decider_id = ANY (v_direct))
                AND v_held ? e.decider_id
                AND (v_view_row.subscribed_deciders IS NULL OR e.decider = ANY (v_view_row.subscribed_deciders))
                AND (v_view_row.subscribed_events IS NULL OR e.event = ANY (v_view_row.subscribed_events))
              GROUP BY e.decider_id) s
        WHERE l.view = v_view
          AND l.decider_id = s.decider_id;
    END IF;
    UPDATE view_frontiers f
    SET transaction_id = v_end_xid,
        "offset"       = v_end,
        updated_at     = now()
    WHERE f.view = v_view;
    -- Says, to the rest of the transaction, that the frontier moved: a batch that returned nothing (its events all
    -- went to lock rows, or to no subscribed stream) is not the end of the log, and its caller should go on.
    PERFORM set_config('fstore.log_batch_moved', 'true', true);
END;
$claim_log_batch$;
--> statement-breakpoint
-- (claim_log_batch was never PUBLIC's: CREATE OR REPLACE keeps its grants, and this says so again.)
REVOKE EXECUTE ON FUNCTION claim_log_batch(text, int) FROM PUBLIC;
