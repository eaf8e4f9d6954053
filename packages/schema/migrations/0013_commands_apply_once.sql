-- Custom SQL migration: a command applies once to its stream.
-- API: append_events as the five-argument form, and with v_once_per_command true it refuses a command that the
-- stream already holds events of: unique_violation on events_command_applied, with a DETAIL of JSON
-- {"command_id": ...}, and nothing written. A command handler that retries after a lost answer, or a caller that
-- sends the same command (an HTTP idempotency key) twice, then cannot apply it twice, even if it decides again
-- with new event ids. A retry of the very same batch (its first event id stored with the same content) still
-- returns the stored events. fstore-sql's append_event and the five-argument form are unchanged: the seed appends
-- one command's events one call at a time.
--
-- Two callers that pass this check at once both append after the same last event, so one of them collides on
-- events_previous_id_key or events_first_event_key as any two writers do; a caller that reloads then sees the
-- other's events. The check reads the stream's events (by decider_id), as the load before deciding did: appends
-- that do not ask for it pay nothing, and no index is added to the append path.
-- Example: SELECT * FROM append_events('decider1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', NULL,
--          'f156a3c4-9bd8-11ed-a8fc-0242ac120002',
--          '[{"event": "event1", "event_id": "21e19516-9bda-11ed-a8fc-0242ac120002", "data": {}}]', true);
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb, v_once_per_command boolean)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$append_events_once$
BEGIN
    IF v_once_per_command IS NULL THEN
        RAISE EXCEPTION 'append_events: once_per_command must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_once_per_command
        AND v_command_id IS NOT NULL
        -- A retry of the same batch: the five-argument form returns it, or refuses other content.
        AND jsonb_typeof(v_events) = 'array'
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = (v_events -> 0 ->> 'event_id')::uuid)
        AND EXISTS (SELECT 1
                    FROM events e
                    WHERE e.decider_id = v_decider_id
                      AND e.decider = v_decider
                      AND e.command_id = v_command_id) THEN
        RAISE EXCEPTION 'append_events: command % was already applied to stream % of %', v_command_id, v_decider_id,
            v_decider
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_command_applied',
                  DETAIL = json_build_object('command_id', v_command_id)::text;
    END IF;
    RETURN QUERY SELECT * FROM append_events(v_decider, v_decider_id, v_previous_id, v_command_id, v_events);
END;
$append_events_once$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION append_events(text, text, uuid, uuid, jsonb, boolean) FROM PUBLIC;
--> statement-breakpoint
-- Whoever may append with the five-argument form may append with this one (as 0012 grants its overloads).
DO
$grant_like_append_events$
DECLARE
    v_grantee text;
BEGIN
    FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                     FROM pg_proc s
                              CROSS JOIN LATERAL aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a
                     WHERE s.oid = 'append_events(text, text, uuid, uuid, jsonb)'::regprocedure
                       AND a.privilege_type = 'EXECUTE'
                       AND a.grantee <> s.proowner
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION append_events(text, text, uuid, uuid, jsonb, boolean) TO %s',
                           v_grantee);
        END LOOP;
END
$grant_like_append_events$;
