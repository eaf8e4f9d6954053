-- Custom SQL migration: snapshots of long streams (the table is 0017's). A snapshot is a cache of a stream's folded
-- state, per version of its decider that the application names; the command handler loads the newest one of its
-- version, then only the events after it. Snapshots are never needed: deleting them changes no result.

-- API: stores the state folded up to the event at v_offset of the stream, unless a snapshot of this version that
-- reaches as far or further is there already (two handlers may race to write one: the furthest wins). Returns the
-- snapshot the stream has now. The event must be the stream's (P0002 otherwise, constraint events_pkey), the state
-- a JSON value.
-- Example: SELECT * FROM save_snapshot('decider1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', 'v1', 2, '{"count": 2}');
CREATE OR REPLACE FUNCTION save_snapshot(v_decider text, v_decider_id text, v_version text, v_offset bigint,
                                         v_state jsonb)
    RETURNS SETOF snapshots
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$save_snapshot$
DECLARE
    v_event_id uuid;
BEGIN
    IF v_version IS NULL OR v_version = '' THEN
        RAISE EXCEPTION 'save_snapshot: the version must be a name, got %', coalesce(quote_literal(v_version), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_state IS NULL THEN
        RAISE EXCEPTION 'save_snapshot: the state must not be null (JSON null is a state)'
            USING ERRCODE = 'not_null_violation', SCHEMA = 'public', TABLE = 'snapshots', COLUMN = 'state';
    END IF;
    SELECT e.event_id
    INTO v_event_id
    FROM events e
    WHERE e."offset" = v_offset
      AND e.decider_id = v_decider_id
      AND e.decider = v_decider;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'save_snapshot: stream % of % has no event at offset %', v_decider_id, v_decider, v_offset
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'events_pkey';
    END IF;
    INSERT INTO snapshots AS s (decider, decider_id, version, "offset", event_id, state)
    VALUES (v_decider, v_decider_id, v_version, v_offset, v_event_id, v_state)
    ON CONFLICT (decider, decider_id, version) DO UPDATE
        SET "offset"   = excluded."offset",
            event_id   = excluded.event_id,
            state      = excluded.state,
            created_at = now()
    WHERE s."offset" < excluded."offset";
    RETURN QUERY SELECT *
                 FROM snapshots s
                 WHERE s.decider = v_decider
                   AND s.decider_id = v_decider_id
                   AND s.version = v_version;
END;
$save_snapshot$;
--> statement-breakpoint
-- API: the newest snapshot of a stream for this version of its decider, if any.
-- Example: SELECT * FROM get_snapshot('decider1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', 'v1');
CREATE OR REPLACE FUNCTION get_snapshot(v_decider text, v_decider_id text, v_version text)
    RETURNS SETOF snapshots
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_snapshot$
SELECT *
FROM snapshots s
WHERE s.decider = v_decider
  AND s.decider_id = v_decider_id
  AND s.version = v_version;
$get_snapshot$;
--> statement-breakpoint
-- API: deletes the snapshots of a decider, of one version (or every version: null); returns how many. For a version
-- the application no longer runs, or to see that nothing depends on them.
-- Example: SELECT delete_snapshots('decider1', 'v1');
CREATE OR REPLACE FUNCTION delete_snapshots(v_decider text, v_version text DEFAULT NULL)
    RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$delete_snapshots$
DECLARE
    v_deleted integer;
BEGIN
    IF v_decider IS NULL THEN
        RAISE EXCEPTION 'delete_snapshots: the decider must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM snapshots s WHERE s.decider = v_decider AND (v_version IS NULL OR s.version = v_version);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END;
$delete_snapshots$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION
    save_snapshot(text, text, text, bigint, jsonb),
    delete_snapshots(text, text)
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever may append may keep snapshots, and whoever may read events may read them: the new functions are granted
-- as append_events and get_events(text, text) are, and the new table as events is.
DO
$grant_like_siblings$
DECLARE
    v_pair    record;
    v_grantee text;
BEGIN
    FOR v_pair IN SELECT p.fn, p.sibling
                  FROM (VALUES ('save_snapshot(text, text, text, bigint, jsonb)'::regprocedure,
                                'append_events(text, text, uuid, uuid, jsonb)'::regprocedure),
                               ('delete_snapshots(text, text)'::regprocedure,
                                'append_events(text, text, uuid, uuid, jsonb)'::regprocedure),
                               ('get_snapshot(text, text, text)'::regprocedure, 'get_events(text, text)'::regprocedure))
                           AS p(fn, sibling)
        LOOP
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
    FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                     FROM pg_class c
                              CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                     WHERE c.oid = 'public.events'::regclass
                       AND a.privilege_type = 'SELECT'
                       AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT SELECT ON TABLE public.snapshots TO %s', v_grantee);
        END LOOP;
END
$grant_like_siblings$;
