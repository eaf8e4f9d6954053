-- Custom SQL migration: SQL owns every state change. The few writes that @fstore/store and @fstore/stream made to
-- the tables directly, and the reads that restated what a function already answers, become functions here, so
-- each rule lives in one language and the application role needs no write privilege on any table:
--   * a projection worker's retry of a parked event (claim it, delete it when its handler succeeds, record the
--     failure otherwise): claim_parked_event, ack_parked_event, fail_parked_event;
--   * registerView() given both a polling delay in milliseconds and a lease length: set_view_lock_timeout;
--   * the typed store's paged read of a stream and its start after an event id: a get_events overload that reads
--     one page, and get_event.
-- fstore-sql's functions keep their signatures and behaviour. Each function declares its security here, in its
-- definition: a fixed search_path for all, SECURITY DEFINER for those that write (see
-- 0007_security_in_migrations), and EXECUTE revoked from PUBLIC on those. A role that may call a sibling function
-- (where packages/schema/sql/least-privilege.sql granted it) may call the new one too: see the last statement.
-- One statement per chunk, as in the other migrations.

-- API: one page of a stream of one decider type: up to v_limit events after v_after_offset, in offset order. Read
-- a long stream page by page, each page after the last offset of the one before, in flat memory.
-- Example: SELECT * FROM get_events('f156a3c4-9bd8-11ed-a8fc-0242ac120002', 'decider1', 0, 500);
CREATE OR REPLACE FUNCTION get_events(v_decider_id text, v_decider text, v_after_offset bigint, v_limit int)
    RETURNS SETOF events
    LANGUAGE plpgsql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_events_page$
BEGIN
    IF v_after_offset IS NULL OR v_limit IS NULL OR v_limit < 1 THEN
        RAISE EXCEPTION 'get_events: after_offset must be given and limit must be one or more, got % and %',
            v_after_offset, v_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- PL/pgSQL keeps the plan across pages (a SQL function with a SET clause would plan every call).
    RETURN QUERY SELECT *
                 FROM events e
                 WHERE e.decider_id = v_decider_id
                   AND e.decider = v_decider
                   AND e."offset" > v_after_offset
                 ORDER BY e."offset"
                 LIMIT v_limit;
END;
$get_events_page$;
--> statement-breakpoint
-- API: the event with this id, if any (a reader that starts after a known event looks up its offset here).
-- Example: SELECT * FROM get_event('21e19516-9bda-11ed-a8fc-0242ac120002');
CREATE OR REPLACE FUNCTION get_event(v_event_id uuid)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_event$
SELECT *
FROM events
WHERE event_id = v_event_id;
$get_event$;
--> statement-breakpoint
-- API: set how long a view's leases last, in seconds, keeping everything else of the view. For the README's form of
-- register_view (pooling delay in milliseconds), which has no lease length: register, then set it.
-- Example: SELECT * FROM set_view_lock_timeout('view1', 60);
CREATE OR REPLACE FUNCTION set_view_lock_timeout(v_view text, v_lock_timeout_s bigint)
    RETURNS SETOF views
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$set_view_lock_timeout$
BEGIN
    RETURN QUERY UPDATE views v SET lock_timeout_s = v_lock_timeout_s WHERE v.view = v_view RETURNING v.*;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_view_lock_timeout: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
END;
$set_view_lock_timeout$;
--> statement-breakpoint
-- API: a worker takes the parked event of a view whose retry an operator asked for longest ago (retry_parked_event,
-- on a stream that moved past it), locking it until the caller's transaction ends; another worker skips it. Returns
-- the event with the deliveries that failed so far, or nothing. Handle it in the same transaction, then call
-- ack_parked_event there (it leaves the list with the handler's writes), or, after a rollback, fail_parked_event.
-- Example: BEGIN; SELECT * FROM claim_parked_event('view1'); …; SELECT * FROM ack_parked_event('view1', 42); COMMIT;
CREATE OR REPLACE FUNCTION claim_parked_event(v_view text)
    RETURNS TABLE
            (
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
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$claim_parked_event$
#variable_conflict use_column
DECLARE
    v_parked parked_events;
BEGIN
    -- As lease_events: a view that does not exist is an error, not nothing to do for ever.
    IF NOT EXISTS (SELECT 1 FROM views v WHERE v.view = v_view) THEN
        RAISE EXCEPTION 'claim_parked_event: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    SELECT *
    INTO v_parked
    FROM parked_events p
    WHERE p.view = v_view
      AND p.retry_requested_at IS NOT NULL
    ORDER BY p.retry_requested_at
    LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_parked.attempts, e.* FROM events e WHERE e."offset" = v_parked."offset";
END;
$claim_parked_event$;
--> statement-breakpoint
-- API: the parked event at v_offset, whose retry was requested, was handled: it leaves parked_events. Call it in the
-- transaction that claimed it and wrote the read model, so both commit or neither does.
-- Example: SELECT * FROM ack_parked_event('view1', 42);
CREATE OR REPLACE FUNCTION ack_parked_event(v_view text, v_offset bigint)
    RETURNS SETOF parked_events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$ack_parked_event$
DECLARE
    v_parked parked_events;
BEGIN
    DELETE
    FROM parked_events p
    WHERE p.view = v_view
      AND p."offset" = v_offset
      AND p.retry_requested_at IS NOT NULL
    RETURNING p.* INTO v_parked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no retry is requested for an event parked at offset % for view %', v_offset, v_view
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN NEXT v_parked;
END;
$ack_parked_event$;
--> statement-breakpoint
-- API: the requested retry of the parked event at v_offset failed with v_error: it stays parked, with one more
-- attempt, the new error and parked_at now, until an operator asks again (retry_requested_at is cleared).
-- Example: SELECT * FROM fail_parked_event('view1', 42, 'boom');
CREATE OR REPLACE FUNCTION fail_parked_event(v_view text, v_offset bigint, v_error text)
    RETURNS SETOF parked_events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$fail_parked_event$
DECLARE
    v_parked parked_events;
BEGIN
    UPDATE parked_events p
    SET attempts           = p.attempts + 1,
        error              = coalesce(v_error, ''),
        retry_requested_at = NULL,
        parked_at          = now()
    WHERE p.view = v_view
      AND p."offset" = v_offset
      AND p.retry_requested_at IS NOT NULL
    RETURNING p.* INTO v_parked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no retry is requested for an event parked at offset % for view %', v_offset, v_view
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN NEXT v_parked;
END;
$fail_parked_event$;
--> statement-breakpoint
-- The writing functions run with their owner's rights: nobody may call them by default.
REVOKE EXECUTE ON FUNCTION
    set_view_lock_timeout(text, bigint),
    claim_parked_event(text),
    ack_parked_event(text, bigint),
    fail_parked_event(text, bigint, text)
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever may call a sibling may call the new function, so that an application role keeps doing what it did
-- before this migration without the least-privilege script running again: the new read functions are granted as
-- get_events(text, text) is (to PUBLIC, unless the script revoked that), set_view_lock_timeout as the
-- register_view it completes, and the parked-event functions as fail_event.
DO
$grant_like_siblings$
DECLARE
    v_pair    record;
    v_grantee text;
BEGIN
    FOR v_pair IN SELECT p.fn, p.sibling
                  FROM (VALUES ('get_events(text, text, bigint, int)'::regprocedure, 'get_events(text, text)'::regprocedure),
                               ('get_event(uuid)'::regprocedure, 'get_events(text, text)'::regprocedure),
                               ('set_view_lock_timeout(text, bigint)'::regprocedure,
                                'register_view(text, bigint, timestamp)'::regprocedure),
                               ('claim_parked_event(text)'::regprocedure,
                                'fail_event(text, text, uuid, bigint, text, bigint, int, boolean)'::regprocedure),
                               ('ack_parked_event(text, bigint)'::regprocedure,
                                'fail_event(text, text, uuid, bigint, text, bigint, int, boolean)'::regprocedure),
                               ('fail_parked_event(text, bigint, text)'::regprocedure,
                                'fail_event(text, text, uuid, bigint, text, bigint, int, boolean)'::regprocedure))
                           AS p(fn, sibling)
        LOOP
            -- Both still as migrated (PostgreSQL's default for the read functions, owner only for the others).
            CONTINUE WHEN (SELECT s.proacl FROM pg_proc s WHERE s.oid = v_pair.sibling)
                IS NOT DISTINCT FROM (SELECT f.proacl FROM pg_proc f WHERE f.oid = v_pair.fn);
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_pair.fn);
            FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                             FROM pg_proc s
                                      CROSS JOIN LATERAL aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a
                             WHERE s.oid = v_pair.sibling
                               AND a.privilege_type = 'EXECUTE'
                               AND a.grantee <> s.proowner
                LOOP
                    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', v_pair.fn, v_grantee);
                END LOOP;
        END LOOP;
END
$grant_like_siblings$;
