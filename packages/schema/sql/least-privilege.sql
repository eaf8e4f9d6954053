-- fstore: least-privilege roles for the event store. OPTIONAL, and not a migration: migrate() never runs it. It
-- creates roles and grants privileges, nothing else: the functions' security is part of their definitions in the
-- migrations (0007_security_in_migrations and later), so an upgrade never takes it away.
--
-- What it does (see README.md beside this file):
--   * creates, if missing, two NOLOGIN roles, by default `fstore_app` and `fstore_reader`;
--   * fstore_app may read every fstore table and call every function of the SQL API, but may not INSERT, UPDATE,
--     DELETE or TRUNCATE any fstore table directly: every write goes through a function, so it passes the checks
--     that live there. The functions that write are SECURITY DEFINER (they run with the rights of their owner, the
--     role that ran the migrations), so the application role needs no write right on any table;
--   * fstore_reader may read every fstore table and call the read-only functions (get_events, get_event,
--     get_last_event, get_correlated_events, view_status, list_parked_events, log_head, log_horizon, view_reached,
--     wait_for_view, get_snapshot, subject_keys, get_archived_stream, missing_history, view_lag), nothing else;
--   * forget_subject (crypto-shredding), archive_stream, archive_closed_streams and remove_archived_streams
--     (archiving and retention) are the owner's alone: neither role may call them;
--   * EXECUTE on every fstore function is revoked from PUBLIC, and CREATE on schema public too (PostgreSQL 15 and
--     later already default to that): a role that can create objects in public could shadow built-in functions
--     there, inside the SECURITY DEFINER functions, whose fixed search_path is pg_catalog, public, pg_temp.
--
-- Apply it as the owner of fstore's tables and functions (the role that ran the migrations) or as a superuser:
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f packages/schema/sql/least-privilege.sql
-- Other role names (they are created if missing, or may be existing roles):
--   psql -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c "SET fstore.app_role = 'orders_app'" \
--        -c "SET fstore.reader_role = 'orders_reports'" -f packages/schema/sql/least-privilege.sql
--   (or PGOPTIONS='-c fstore.app_role=orders_app -c fstore.reader_role=orders_reports' psql …)
--
-- It is one statement, so it applies atomically with any client, and it is idempotent. Upgrades need not run it
-- again: a migration that replaces a function keeps its grants, and one that adds a function grants it as its
-- siblings are granted. Running it again after an upgrade is harmless, and converges the grants to exactly these
-- (it also takes back the direct writes on parked_events and views.lock_timeout_s that older versions granted).
--
-- The lists below say which function is which: pnpm check:migrations reads them, and refuses a migration that
-- defines a function of v_write without SECURITY DEFINER, any function without the fixed search_path, or a
-- function in none of the lists.
DO
$fstore_least_privilege$
DECLARE
    -- Role names: the settings fstore.app_role and fstore.reader_role, when set.
    v_app              text := coalesce(nullif(current_setting('fstore.app_role', true), ''), 'fstore_app');
    v_reader           text := coalesce(nullif(current_setting('fstore.reader_role', true), ''), 'fstore_reader');
    -- The search_path every fstore function is defined with (pg_temp last: a temporary table named events must
    -- never be found before public.events).
    v_path    CONSTANT text := 'pg_catalog, public, pg_temp';
    v_tables  CONSTANT text[] := ARRAY ['events', 'deciders', 'views', 'view_frontiers', 'locks', 'parked_events',
        'snapshots', 'subject_keys', 'subject_erasures', 'archived_events', 'archived_streams', 'retention_runs',
        'out_of_order_events'];
    -- The SQL API, by function name (every overload). The read-only ones are SECURITY INVOKER: SELECT on the
    -- tables is all they need.
    v_read    CONSTANT text[] := ARRAY ['get_events', 'get_event', 'get_last_event', 'get_correlated_events',
        'view_status', 'list_parked_events', 'log_head', 'log_horizon', 'view_reached', 'wait_for_view',
        'get_snapshot', 'subject_keys', 'get_archived_stream', 'missing_history', 'view_lag'];
    -- The ones that write are SECURITY DEFINER.
    v_write   CONSTANT text[] := ARRAY ['register_decider_event', 'append_event', 'append_events', 'register_view',
        'stream_events', 'ack_event', 'nack_event', 'schedule_nack_event', 'lease_events', 'ack_events',
        'renew_lease', 'release_lease', 'fail_event', 'retry_parked_event', 'discard_parked_event', 'reset_view',
        'set_wakeups', 'ack_leases', 'set_view_lock_timeout', 'claim_parked_event', 'ack_parked_event',
        'fail_parked_event', 'advance_view', 'claim_log_batch', 'save_snapshot', 'delete_snapshots', 'subject_key',
        'rotate_subject_key'];
    -- Trigger functions and helpers: nobody calls them directly (SECURITY INVOKER; fired by the functions above,
    -- they run as the owner). And the owner's own operations, granted to neither role: forget_subject, and archiving
    -- and retention (archive_stream, archive_closed_streams, remove_archived_streams).
    v_internal CONSTANT text[] := ARRAY ['check_event_append', 'on_insert_or_update_on_views',
        'reset_view_positions', 'forbid_truncate', 'notify_events_appended', 'before_update_views_table',
        'raise_lease_lost', 'raise_beyond_lease', 'subscription_list', 'read_into_lock_rows', 'forget_subject',
        'view_holding_stream', 'move_streams_to_archive', 'warn_missing_history', 'archive_stream',
        'archive_closed_streams', 'remove_archived_streams'];
    v_owner            oid;
    v_missing          text[];
    v_role             text;
    v_table            text;
    v_function         record;
BEGIN
    -- Inside this block, resolve names the way the functions will.
    PERFORM set_config('search_path', v_path, true);

    -- 0. Is fstore installed here, and are the role names sensible?
    SELECT array_agg(t) INTO v_missing FROM unnest(v_tables) t WHERE to_regclass(format('public.%I', t)) IS NULL;
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'fstore least-privilege: tables % are missing from schema public: run fstore''s migrations first',
            v_missing;
    END IF;
    SELECT array_agg(f) INTO v_missing
    FROM unnest(v_read || v_write || v_internal) f
    WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname = f);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'fstore least-privilege: functions % are missing from schema public: run fstore''s migrations first',
            v_missing;
    END IF;
    -- Their security comes from the migrations (0007_security_in_migrations and later). On an older install the
    -- application role could not write through them: refuse it.
    SELECT array_agg(format('%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)) ORDER BY 1)
    INTO v_missing
    FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace
      AND p.proname = ANY (v_read || v_write || v_internal)
      AND (p.prosecdef IS DISTINCT FROM (p.proname = ANY (v_write))
        OR NOT coalesce('search_path=' || v_path = ANY (p.proconfig), false));
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'fstore least-privilege: functions % are not defined with the security the migrations give them (SECURITY DEFINER for those that write, search_path %): run fstore''s migrations first',
            v_missing, v_path;
    END IF;
    IF v_app = v_reader THEN
        RAISE EXCEPTION 'fstore least-privilege: fstore.app_role and fstore.reader_role must differ (both are %)', v_app;
    END IF;
    SELECT c.relowner INTO v_owner FROM pg_class c WHERE c.oid = 'public.events'::regclass;

    -- 1. The roles, NOLOGIN: grant them to login users (CREATE ROLE … LOGIN IN ROLE fstore_app).
    FOREACH v_role IN ARRAY ARRAY [v_app, v_reader]
        LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
                EXCEPTION
                    -- Another session created it meanwhile (roles are cluster-wide).
                    WHEN duplicate_object OR unique_violation THEN NULL;
                END;
            END IF;
            -- A superuser, or a member of the owner, would bypass every privilege below.
            IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role AND (r.rolsuper OR r.rolbypassrls))
                OR pg_has_role(v_role, v_owner, 'USAGE') THEN
                RAISE EXCEPTION 'fstore least-privilege: role % is a superuser or acts as the owner of fstore''s tables (%): privileges cannot restrict it',
                    v_role, pg_get_userbyid(v_owner);
            END IF;
        END LOOP;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), v_app, v_reader);

    -- 2. Nobody but trusted roles may create objects in public: the SECURITY DEFINER functions search it.
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I, %I', v_app, v_reader);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I, %I', v_app, v_reader);
    FOR v_role IN SELECT pg_get_userbyid(a.grantee)
                  FROM pg_namespace n
                           CROSS JOIN LATERAL aclexplode(n.nspacl) a
                  WHERE n.oid = 'public'::regnamespace
                    AND a.privilege_type = 'CREATE'
                    AND a.grantee <> v_owner
                    AND a.grantee <> n.nspowner
                    AND a.grantee <> 0
        LOOP
            RAISE WARNING 'fstore least-privilege: role % may create objects in schema public, which fstore''s SECURITY DEFINER functions search: trust it, or revoke CREATE from it',
                v_role;
        END LOOP;

    -- 3. Tables: read, never write directly. REVOKE ALL first, so that running this again converges.
    FOREACH v_table IN ARRAY v_tables
        LOOP
            EXECUTE format('REVOKE ALL ON TABLE public.%I FROM PUBLIC, %I, %I', v_table, v_app, v_reader);
            EXECUTE format('GRANT SELECT ON TABLE public.%I TO %I, %I', v_table, v_app, v_reader);
        END LOOP;
    EXECUTE format('REVOKE ALL ON SEQUENCE public.events_offset_seq FROM PUBLIC, %I, %I', v_app, v_reader);

    -- 4. Functions: EXECUTE only where granted. Their SECURITY DEFINER and search_path are the migrations' (checked
    --    above), never changed here.
    FOR v_function IN SELECT p.proname                                                    AS name,
                             format('public.%I(%s)', p.proname,
                                    pg_get_function_identity_arguments(p.oid))           AS signature
                      FROM pg_proc p
                      WHERE p.pronamespace = 'public'::regnamespace
                        AND p.proname = ANY (v_read || v_write || v_internal)
                      ORDER BY 2
        LOOP
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, %I, %I', v_function.signature, v_app, v_reader);
            IF v_function.name = ANY (v_write) THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_function.signature, v_app);
            ELSIF v_function.name = ANY (v_read) THEN
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I, %I', v_function.signature, v_app, v_reader);
            END IF;
        END LOOP;

    -- 5. The SECURITY DEFINER functions run as their owner: a superuser owner works, but a dedicated owner role
    --    (the one that runs the migrations, without SUPERUSER) limits what a mistake in them could do.
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = v_owner) THEN
        RAISE WARNING 'fstore least-privilege: fstore''s functions are owned by superuser %, so the SECURITY DEFINER ones run as a superuser: prefer running the migrations as a dedicated owner role',
            pg_get_userbyid(v_owner);
    END IF;
    RAISE NOTICE 'fstore least-privilege: applied for roles % (application) and % (read-only)', v_app, v_reader;
END
$fstore_least_privilege$;
