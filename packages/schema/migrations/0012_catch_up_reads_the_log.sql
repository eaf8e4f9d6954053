-- Custom SQL migration: a view that is behind reads the log, not one stream at a time.
-- Catching up over many small streams paid three lock-row writes per stream before a handler saw an event:
-- advance_view wrote the row, lease_events leased it, the acknowledgement released it. claim_log_batch lets the
-- consumer that holds a view's frontier take the next stretch of the log itself, in the transaction that handles
-- it: the frontier moves (and the lock rows its streams already have), committed with the handler's writes or not
-- at all; a stream without a lock row is handled up to the frontier, so a stream taken whole costs no write.
-- Streams with work pending in their lock rows (a lease, a retry, a stopped stream) keep going through leases, in
-- order, as before: the batch reads their events into their lock rows.
-- One statement per chunk, as in the other migrations.

-- Reads a stretch of the log into the view's lock rows, for leases to deliver: the events past v_from and up to
-- v_to (in (transaction_id, offset) order) of every subscribed stream but those in v_skip, past what v_handled
-- (decider_id -> offset) says was handled. The caller holds the view's frontier and moves it to v_to afterwards:
-- advance_view for every stream of its stretch, claim_log_batch for the streams its batch does not take. A stream
-- that gets its first row starts after what was handled before: its events created before start_at, before the
-- floor of a view registered to start now, and up to v_from, since a stream without a row was handled up to the
-- frontier (log batches take streams whole without writing them a row). Only the frontier's holder inserts lock
-- rows, so no row appears between that look and the insert.
CREATE OR REPLACE FUNCTION read_into_lock_rows(v_view text, v_from_xid xid8, v_from bigint, v_to_xid xid8, v_to bigint,
                                               v_skip text[] DEFAULT '{}', v_handled jsonb DEFAULT '{}')
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp
    -- Planned for each call: a generic plan cannot see how narrow the stretch's range is.
    SET plan_cache_mode = force_custom_plan
    -- Every look here goes through an index. With the lock rows analyzed while there were none (a new install), the
    -- planner took a sequential scan of them for each stream's look, over the rows this very statement was inserting:
    -- reading 100,000 streams into lock rows took 58 s instead of 2.
    SET enable_seqscan = off AS
$read_into_lock_rows$
DECLARE
    v_view_row views;
    v_floor    xid8;
BEGIN
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view;
    SELECT f.floor_transaction_id INTO v_floor FROM view_frontiers f WHERE f.view = v_view;
    WITH streams AS (SELECT e.decider_id,
                            max(e."offset")                                                AS head,
                            -- Events created before the view's start_at are skipped, never delivered.
                            max(e."offset") FILTER (WHERE e.created_at < v_view_row.start_at) AS before_start,
                            bool_or(e.final)                                               AS final
                     FROM events e
                     WHERE (e.transaction_id, e."offset") > (v_from_xid, v_from)
                       AND (e.transaction_id, e."offset") <= (v_to_xid, v_to)
                       AND NOT e.decider_id = ANY (v_skip)
                       AND e."offset" > coalesce((v_handled ->> e.decider_id)::bigint, 0)
                       AND (v_view_row.subscribed_deciders IS NULL OR e.decider = ANY (v_view_row.subscribed_deciders))
                       AND (v_view_row.subscribed_events IS NULL OR e.event = ANY (v_view_row.subscribed_events))
                     GROUP BY e.decider_id)
    INSERT INTO locks (view, decider_id, "offset", last_offset, locked_until, offset_final)
    SELECT v_view,
           s.decider_id,
           s.head,
           greatest(coalesce(s.before_start, 0),
                    CASE
                        WHEN v_floor > '0'::xid8 THEN
                            coalesce((SELECT e."offset"
                                      FROM events e
                                      WHERE e.decider_id = s.decider_id
                                        AND e.transaction_id < v_floor
                                      ORDER BY e."offset" DESC
                                      LIMIT 1), 0)
                        ELSE 0 END,
                    -- Only subscribed events count: an unsubscribed one committed under a lower transaction id
                    -- must not hide a lower-offset event that is still unhandled.
                    CASE
                        WHEN NOT EXISTS (SELECT 1 FROM locks l WHERE l.view = v_view AND l.decider_id = s.decider_id) THEN
                            coalesce((SELECT e."offset"
                                      FROM events e
                                      WHERE e.decider_id = s.decider_id
                                        AND (e.transaction_id, e."offset") <= (v_from_xid, v_from)
                                        AND (v_view_row.subscribed_events IS NULL
                                          OR e.event = ANY (v_view_row.subscribed_events))
                                      ORDER BY e."offset" DESC
                                      LIMIT 1), 0)
                        ELSE 0 END),
           now(),
           s.final
    FROM streams s
    -- Rows in one order, as every writer of many lock rows takes them: no deadlock between them.
    ORDER BY s.decider_id
    ON CONFLICT ON CONSTRAINT locks_pkey DO UPDATE
        SET "offset"     = greatest(locks."offset", EXCLUDED."offset"),
            last_offset  = greatest(locks.last_offset, EXCLUDED.last_offset),
            offset_final = locks.offset_final OR EXCLUDED.offset_final,
            updated_at   = now();
END;
$read_into_lock_rows$;
--> statement-breakpoint
-- API: inside a transaction, takes the view's next events straight from the log for the caller to handle in that
-- transaction, up to v_max_events of them, in log order (offset order within each stream). It moves the view's
-- frontier past them and records their streams as handled up to them: commit once they are handled, roll back to
-- give them back. Events created before the view's start_at are passed over, as advance_view does. The events of
-- a stream that is not free to take this way (one with a lease, a retry or unhandled events in its lock row, or one
-- whose events were committed out of offset order) are read into its lock row instead, as advance_view reads them,
-- for its leases to deliver. It returns nothing when another consumer holds the frontier or nothing new has ended,
-- or when no event of the stretch was for the caller: then it sets current_setting('fstore.log_batch_moved', true)
-- to 'true' in the transaction, as every call that moves the frontier does. Example:
--   BEGIN; SELECT * FROM claim_log_batch('view1', 1000); -- handle the rows, then: COMMIT;
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
    v_held      jsonb;
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
        RETURN;
    END IF;
    -- The window: up to v_max_events events past the frontier, of ended transactions (an index-only range).
    SELECT w.transaction_id, w."offset"
    INTO v_end_xid, v_end
    FROM (SELECT e.transaction_id, e."offset"
          FROM events e
          WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
            AND e.transaction_id < v_horizon
          ORDER BY e.transaction_id, e."offset"
          LIMIT v_max_events) w
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
    SELECT coalesce(jsonb_object_agg(h.decider_id, h.last_offset), '{}')
    INTO v_held
    FROM (SELECT l.decider_id, l.last_offset
          FROM locks l
          WHERE l.view = v_view
            AND l.decider_id IN (SELECT e.decider_id
                                 FROM events e
                                 WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                                   AND (e.transaction_id, e."offset") <= (v_end_xid, v_end))
            AND l.last_offset = l."offset"
            AND l.locked_until <= now()
          ORDER BY l.decider_id
          FOR NO KEY UPDATE SKIP LOCKED) h;
    -- The held rows are looked up in that map, not joined: the planner takes a range inside one transaction for a
    -- row or two, and a nested loop over a thousand held rows per event cost 100 ms a batch.
    WITH fresh AS (SELECT e.decider_id, e.previous_id, e.transaction_id, e."offset", e.created_at,
                          (v_held ->> e.decider_id)::bigint AS handled_to,
                          lag(e.event_id) OVER (PARTITION BY e.decider_id ORDER BY e."offset") AS before_id,
                          lag(e."offset") OVER (PARTITION BY e.decider_id ORDER BY e.transaction_id, e."offset") AS prev_in_log
                   FROM events e
                   WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
                     AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
                     AND (v_view_row.subscribed_deciders IS NULL OR e.decider = ANY (v_view_row.subscribed_deciders))
                     AND e."offset" > coalesce((v_held ->> e.decider_id)::bigint, 0)),
         streams AS (SELECT f.decider_id,
                            max(f.handled_to)                                          AS handled_to,
                            (array_agg(f.previous_id ORDER BY f."offset"))[1]          AS first_previous,
                            bool_and(f.before_id IS NULL OR f.previous_id = f.before_id)
                                AND bool_and(f.prev_in_log IS NULL OR f.prev_in_log < f."offset")
                                AND coalesce(max(f."offset") FILTER (WHERE f.created_at < v_view_row.start_at)
                                                 < min(f."offset") FILTER (WHERE f.created_at >= v_view_row.start_at),
                                             true)                                     AS orderly
                     FROM fresh f
                     GROUP BY f.decider_id),
         judged AS (SELECT s.decider_id,
                           s.orderly
                               AND (s.handled_to IS NOT NULL
                                   OR NOT EXISTS (SELECT 1 FROM locks l WHERE l.view = v_view AND l.decider_id = s.decider_id))
                               AND (s.first_previous IS NULL
                                   OR EXISTS (SELECT 1
                                              FROM events p
                                              WHERE p.event_id = s.first_previous
                                                AND (p."offset" <= s.handled_to
                                                  OR (p.transaction_id, p."offset")
                                                         <= (v_frontier.transaction_id, v_frontier."offset")))) AS direct
                    FROM streams s)
    SELECT coalesce(array_agg(j.decider_id), '{}')
    INTO v_direct
    FROM judged j
    WHERE j.direct;
    -- The other streams of the window go on through their leases: their events are read into their lock rows as
    -- advance_view reads them (waiting for a row an acknowledgement holds, in the same decider_id order), so that
    -- the batch takes the whole window instead of stopping in front of them.
    PERFORM read_into_lock_rows(v_view, v_frontier.transaction_id, v_frontier."offset", v_end_xid, v_end,
                                v_direct, v_held);
    -- The events to handle (read before the lock rows move past them): those of the taken streams in the window,
    -- past what their lock rows say was handled, of the subscribed types, created from start_at on.
    RETURN QUERY
        SELECT e.*
        FROM events e
        WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
          AND (e.transaction_id, e."offset") <= (v_end_xid, v_end)
          AND e.decider_id = ANY (v_direct)
          AND (v_view_row.subscribed_deciders IS NULL OR e.decider = ANY (v_view_row.subscribed_deciders))
          AND (v_view_row.subscribed_events IS NULL OR e.event = ANY (v_view_row.subscribed_events))
          AND e.created_at >= v_view_row.start_at
          AND e."offset" > coalesce((v_held ->> e.decider_id)::bigint, 0)
        ORDER BY e.transaction_id, e."offset";
    -- The taken streams that have a lock row, handled up to their last event of the batch once the caller commits.
    -- Those without one get none: no row means handled up to the frontier (advance_view starts a new row there),
    -- so a stream taken whole costs no write of its own.
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
            AND e.decider_id = ANY (v_direct)
            AND v_held ? e.decider_id
            AND (v_view_row.subscribed_deciders IS NULL OR e.decider = ANY (v_view_row.subscribed_deciders))
            AND (v_view_row.subscribed_events IS NULL OR e.event = ANY (v_view_row.subscribed_events))
          GROUP BY e.decider_id) s
    WHERE l.view = v_view
      AND l.decider_id = s.decider_id;
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
-- The lease with a say in how far it advances the view first: a worker that takes the log with claim_log_batch
-- leases with 0: the frontier is its batches' business, and they read the events of streams that need their lease
-- into those streams' lock rows. Otherwise as lease_events(text, int, int, int), which now calls it.
CREATE OR REPLACE FUNCTION lease_events(v_view text, v_streams int, v_events_per_stream int, v_lock_seconds int,
                                        v_advance_events int)
    RETURNS TABLE (lease_id uuid, attempts int, event text, event_id uuid, event_version bigint, decider text,
                   decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean,
                   created_at timestamptz, "offset" bigint, transaction_id xid8)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    -- Planned for each call: after five calls PL/pgSQL switches to a generic plan, which PostgreSQL estimates as a
    -- hash join over every lock row of the view (80 to 110 ms a lease at 100,000 streams, against 3 to 6 ms).
    SET plan_cache_mode = force_custom_plan AS
$lease_events$
#variable_conflict use_column
DECLARE
    v_view_row views;
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
    IF v_advance_events IS NULL OR v_advance_events < 0 THEN
        RAISE EXCEPTION 'lease_events: events to advance must be zero or more, got %', v_advance_events
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A view that does not exist (a typo, or one deleted while its workers run) is an error, not an empty lease
    -- for ever: a worker polling it would otherwise look idle. (stream_events keeps fstore-sql's empty answer.)
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease_events: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_advance_events > 0 THEN
        PERFORM advance_view(v_view, v_advance_events);
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
                                          AND (v_view_row.subscribed_deciders IS NULL
                                            OR ev.decider = ANY (v_view_row.subscribed_deciders))
                                          AND (v_view_row.subscribed_events IS NULL
                                            OR ev.event = ANY (v_view_row.subscribed_events))
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
                                       AND (v_view_row.subscribed_deciders IS NULL
                                         OR ev.decider = ANY (v_view_row.subscribed_deciders))
                                       AND (v_view_row.subscribed_events IS NULL
                                         OR ev.event = ANY (v_view_row.subscribed_events))
                                     ORDER BY ev."offset") e
        ORDER BY e."offset";
END;
$lease_events$;
--> statement-breakpoint
-- The four-argument lease advances the view first by about what it may deliver, as since 0010.
CREATE OR REPLACE FUNCTION lease_events(v_view text, v_streams int DEFAULT 10, v_events_per_stream int DEFAULT 100,
                                        v_lock_seconds int DEFAULT 300)
    RETURNS TABLE (lease_id uuid, attempts int, event text, event_id uuid, event_version bigint, decider text,
                   decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean,
                   created_at timestamptz, "offset" bigint, transaction_id xid8)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
    SET plan_cache_mode = force_custom_plan AS
$lease_events_advancing$
BEGIN
    RETURN QUERY SELECT *
                 FROM lease_events(v_view, v_streams, v_events_per_stream, v_lock_seconds,
                                   least(greatest(1000, v_streams::bigint * v_events_per_stream), 20000)::int);
END;
$lease_events_advancing$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION
    claim_log_batch(text, int),
    lease_events(text, int, int, int, int)
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever may lease may take the log and lease with the new overload (as in 0008 and 0010).
DO
$grant_like_siblings$
DECLARE
    v_fn      regprocedure;
    v_grantee text;
BEGIN
    FOREACH v_fn IN ARRAY ARRAY ['claim_log_batch(text, int)'::regprocedure,
        'lease_events(text, int, int, int, int)'::regprocedure]
        LOOP
            FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                             FROM pg_proc s
                                      CROSS JOIN LATERAL aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a
                             WHERE s.oid = 'lease_events(text, int, int, int)'::regprocedure
                               AND a.privilege_type = 'EXECUTE'
                               AND a.grantee <> s.proowner
                LOOP
                    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', v_fn, v_grantee);
                END LOOP;
        END LOOP;
END
$grant_like_siblings$;
--> statement-breakpoint
-- advance_view, as 0010 made it, but a stream that gets its first lock row starts after its last subscribed event
-- at or below the frontier: log batches take streams whole without writing them a row (one write per stream was
-- what catching up over many small streams paid for), so no row means handled up to the frontier.
CREATE OR REPLACE FUNCTION advance_view(v_view text, v_max_events int DEFAULT 10000)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$advance_view$
DECLARE
    v_horizon  xid8;
    v_frontier view_frontiers;
    v_passed   integer;
    v_last_xid xid8;
    v_last     bigint;
BEGIN
    IF v_max_events IS NULL OR v_max_events < 1 THEN
        RAISE EXCEPTION 'advance_view: max events must be one or more, got %', v_max_events
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A look without a lock first: idle consumers call this on every poll, and locking a row writes to it.
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'advance_view: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    -- The first event past the frontier, in index order. (As EXISTS, PL/pgSQL's cached generic plan became a
    -- sequential scan of the whole log; ORDER BY ... LIMIT 1 keeps it an index probe.)
    PERFORM 1
    FROM events e
    WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
    ORDER BY e.transaction_id, e."offset"
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- Every transaction below the horizon has ended: its events are all visible now, and no event can join them
    -- later. Events of transactions at or above it (still running) wait for a later call.
    v_horizon := log_horizon();
    PERFORM 1
    FROM events e
    WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
      AND e.transaction_id < v_horizon
    ORDER BY e.transaction_id, e."offset"
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- One consumer advances a view at a time; the others lease what is already there.
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT count(*)::integer,
           (array_agg(b.transaction_id ORDER BY b.transaction_id DESC, b."offset" DESC))[1],
           (array_agg(b."offset" ORDER BY b.transaction_id DESC, b."offset" DESC))[1]
    INTO v_passed, v_last_xid, v_last
    FROM (SELECT e.transaction_id, e."offset"
          FROM events e
          WHERE (e.transaction_id, e."offset") > (v_frontier.transaction_id, v_frontier."offset")
            AND e.transaction_id < v_horizon
          ORDER BY e.transaction_id, e."offset"
          LIMIT v_max_events) b;
    IF v_passed > 0 THEN
        PERFORM read_into_lock_rows(v_view, v_frontier.transaction_id, v_frontier."offset", v_last_xid, v_last);
        UPDATE view_frontiers f
        SET transaction_id = v_last_xid,
            "offset"       = v_last,
            updated_at     = now()
        WHERE f.view = v_view;
    END IF;
    RETURN v_passed;
END;
$advance_view$;
--> statement-breakpoint
-- Replacing a function keeps its grants; the revoke is repeated so that this file says so on its own. The helper
-- runs with its callers' (the owner's) rights and is nobody else's to call.
REVOKE EXECUTE ON FUNCTION
    advance_view(text, int),
    read_into_lock_rows(text, xid8, bigint, xid8, bigint, text[], jsonb)
    FROM PUBLIC;
