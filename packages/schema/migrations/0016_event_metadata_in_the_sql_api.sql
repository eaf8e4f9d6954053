-- Custom SQL migration: event metadata in the SQL API. 0015 added events.metadata (a JSON object of correlation_id,
-- causation_id, traceparent, tracestate and headers, checked by events_metadata_check) and the partial index of
-- correlation ids. Here the functions take and return it:
--   * append_event and append_events get overloads that take the metadata (every event of an append_events call
--     carries the command's); the older signatures keep working and write none;
--   * the functions that return SETOF events return it as their last column (get_events, get_event, stream_events,
--     claim_log_batch…: nothing to do), and so do lease_events and claim_parked_event, whose explicit row types are
--     re-created with it (PostgreSQL cannot change a function's result type in place);
--   * get_correlated_events finds the events of one correlation id, through that index.

-- The functions whose row type changes move aside, so that their grants can be copied to the new ones below, then
-- go. Until then nobody calls them: this all runs in the migration's one transaction.
ALTER FUNCTION lease_events(text, int, int, int, int) RENAME TO lease_events_before_metadata;
--> statement-breakpoint
ALTER FUNCTION lease_events(text, int, int, int) RENAME TO lease_events_before_metadata;
--> statement-breakpoint
ALTER FUNCTION claim_parked_event(text) RENAME TO claim_parked_event_before_metadata;
--> statement-breakpoint
-- lease_events as 0012 made it, returning each event's metadata last.
CREATE OR REPLACE FUNCTION lease_events(v_view text, v_streams int, v_events_per_stream int, v_lock_seconds int,
                                        v_advance_events int)
    RETURNS TABLE (lease_id uuid, attempts int, event text, event_id uuid, event_version bigint, decider text,
                   decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean,
                   created_at timestamptz, "offset" bigint, transaction_id xid8, metadata jsonb)
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
CREATE OR REPLACE FUNCTION lease_events(v_view text, v_streams int DEFAULT 10, v_events_per_stream int DEFAULT 100,
                                        v_lock_seconds int DEFAULT 300)
    RETURNS TABLE (lease_id uuid, attempts int, event text, event_id uuid, event_version bigint, decider text,
                   decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean,
                   created_at timestamptz, "offset" bigint, transaction_id xid8, metadata jsonb)
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
-- claim_parked_event as 0008 made it, returning the event's metadata last.
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
                transaction_id xid8,
                metadata       jsonb
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
-- API: append one event with its metadata (a JSON object: see events_metadata_check), otherwise as the
-- nine-argument append_event. Metadata that is not such an object is refused by events_metadata_check (23514).
-- Example: SELECT * FROM append_event('event1', '21e19516-9bda-11ed-a8fc-0242ac120002', 'decider1',
--          'f156a3c4-9bd8-11ed-a8fc-0242ac120002', '{}', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', null, 1, false,
--          '{"correlation_id": "order-42", "headers": {"user": "ada"}}');
CREATE OR REPLACE FUNCTION append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text,
                                        v_data jsonb, v_command_id uuid, v_previous_id uuid,
                                        v_event_version bigint, v_final boolean, v_metadata jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$append_event_with_metadata$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final, metadata)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id,
                coalesce(v_final, false), v_metadata)
        RETURNING *;
END;
$append_event_with_metadata$;
--> statement-breakpoint
-- API: append_events (0003), once per command when asked (0013), with the command's metadata on each of its
-- events. This is now the one body of append_events; the five- and six-argument forms call it. A retry of a stored
-- batch must carry the same metadata too, or it is other content (events_event_id_key); its trace context
-- (traceparent, tracestate) may differ, as each try is traced on its own.
-- Example: SELECT * FROM append_events('decider1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', NULL,
--          'f156a3c4-9bd8-11ed-a8fc-0242ac120002',
--          '[{"event": "event1", "event_id": "21e19516-9bda-11ed-a8fc-0242ac120002", "data": {}}]', false,
--          '{"correlation_id": "order-42", "causation_id": "f156a3c4-9bd8-11ed-a8fc-0242ac120002"}');
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb, v_once_per_command boolean, v_metadata jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$append_events_with_metadata$
DECLARE
    v_count      int;
    v_first_id   uuid;
    v_last_id    uuid;
    v_stale      boolean;
    v_null       text := CASE
                             WHEN v_decider IS NULL THEN 'decider'
                             WHEN v_decider_id IS NULL THEN 'decider_id'
                             WHEN v_command_id IS NULL THEN 'command_id' END;
BEGIN
    IF v_null IS NOT NULL THEN
        RAISE EXCEPTION 'append_events: % must not be null', v_null
            USING ERRCODE = 'not_null_violation', SCHEMA = 'public', TABLE = 'events', COLUMN = v_null;
    END IF;
    IF v_events IS NULL OR jsonb_typeof(v_events) <> 'array' OR jsonb_array_length(v_events) = 0 THEN
        RAISE EXCEPTION 'append_events: events must be a non-empty JSON array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_once_per_command IS NULL THEN
        RAISE EXCEPTION 'append_events: once_per_command must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_count := jsonb_array_length(v_events);
    v_first_id := (v_events -> 0 ->> 'event_id')::uuid;

    -- A retry of a batch that was already stored?
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = v_first_id) THEN
        IF (SELECT count(*)
            FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)
                     JOIN events e ON e.event_id = (x.element ->> 'event_id')::uuid
            WHERE e.decider = v_decider
              AND e.decider_id = v_decider_id
              AND e.command_id = v_command_id
              AND e.event = x.element ->> 'event'
              AND e.event_version = coalesce((x.element ->> 'event_version')::bigint, 1)
              AND e.data = x.element -> 'data'
              AND e.final = coalesce((x.element ->> 'final')::boolean, false)
              -- The trace context is the try's, not the content: a retry runs in a span of its own.
              AND nullif(e.metadata - 'traceparent' - 'tracestate', '{}')
                  IS NOT DISTINCT FROM nullif(v_metadata - 'traceparent' - 'tracestate', '{}')
              AND e.previous_id IS NOT DISTINCT FROM
                  CASE WHEN x.n = 1 THEN v_previous_id ELSE (v_events -> (x.n::int - 2) ->> 'event_id')::uuid END
           ) = v_count THEN
            RETURN QUERY SELECT e.*
                         FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)
                                  JOIN events e ON e.event_id = (x.element ->> 'event_id')::uuid
                         ORDER BY x.n;
            RETURN;
        END IF;
        RAISE EXCEPTION 'append_events: event % is already stored, with other content', v_first_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'events_event_id_key',
                  DETAIL = json_build_object('event_id', v_first_id)::text;
    END IF;

    -- Once per command (0013): a stream that holds events of this command refuses it again, whatever the events.
    IF v_once_per_command
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

    -- The same one-probe questions as the append trigger (see check_event_append), asked once for the batch.
    IF EXISTS (SELECT 1 FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider AND e.final) THEN
        RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed, you can not append events to it.'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                  DETAIL = format('decider %s, decider_id %s', v_decider, v_decider_id);
    END IF;
    IF v_previous_id IS NULL THEN
        v_stale := EXISTS (SELECT 1
                           FROM events e
                           WHERE e.decider_id = v_decider_id
                             AND e.decider = v_decider
                             AND e.previous_id IS NULL);
    ELSE
        -- v_previous_id is the stream's last event if it is in the stream and nothing follows it.
        v_stale := NOT EXISTS (SELECT 1
                               FROM events e
                               WHERE e.event_id = v_previous_id
                                 AND e.decider_id = v_decider_id
                                 AND e.decider = v_decider)
            OR EXISTS (SELECT 1 FROM events e WHERE e.previous_id = v_previous_id);
    END IF;
    IF v_stale THEN
        -- Only on this error path: where does the stream really end?
        SELECT e.event_id
        INTO v_last_id
        FROM events e
        WHERE e.decider_id = v_decider_id
          AND e.decider = v_decider
        ORDER BY e."offset" DESC
        LIMIT 1;
        RAISE EXCEPTION 'append_events: stream % of % was expected to end at %, but it ends at %',
            v_decider_id, v_decider, coalesce(v_previous_id::text, '(nothing: a new stream)'),
            coalesce(v_last_id::text, '(nothing: no event yet)')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_expected_last_event',
                  DETAIL = json_build_object('expected', v_previous_id, 'found', v_last_id)::text;
    END IF;

    -- One statement for the batch: each row still passes the append trigger (which sees the rows before it in
    -- the same statement) and the metadata check.
    RETURN QUERY
        WITH batch AS (SELECT x.n,
                              x.element ->> 'event'                                       AS event,
                              (x.element ->> 'event_id')::uuid                            AS event_id,
                              coalesce((x.element ->> 'event_version')::bigint, 1)        AS event_version,
                              x.element -> 'data'                                         AS data,
                              coalesce((x.element ->> 'final')::boolean, false)           AS final
                       FROM jsonb_array_elements(v_events) WITH ORDINALITY AS x(element, n)),
             inserted AS (
                 INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final, metadata)
                     SELECT b.event, b.event_id, b.event_version, v_decider, v_decider_id, b.data, v_command_id,
                            coalesce(lag(b.event_id) OVER (ORDER BY b.n), v_previous_id), b.final, v_metadata
                     FROM batch b
                     ORDER BY b.n
                     RETURNING *)
        SELECT *
        FROM inserted
        ORDER BY inserted."offset";
END;
$append_events_with_metadata$;
--> statement-breakpoint
-- The five-argument form: no check per command, no metadata.
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$append_events$
BEGIN
    RETURN QUERY SELECT * FROM append_events(v_decider, v_decider_id, v_previous_id, v_command_id, v_events, false,
                                             NULL::jsonb);
END;
$append_events$;
--> statement-breakpoint
-- The six-argument form (0013): no metadata.
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb, v_once_per_command boolean)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$append_events_once$
BEGIN
    RETURN QUERY SELECT * FROM append_events(v_decider, v_decider_id, v_previous_id, v_command_id, v_events,
                                             v_once_per_command, NULL::jsonb);
END;
$append_events_once$;
--> statement-breakpoint
-- API: the events of one correlation id, in log order: a command's events and everything they caused, across
-- streams. Plain SQL with the index's own predicate, so that the planner can use events_correlation_id_idx.
-- Example: SELECT * FROM get_correlated_events('order-42');
CREATE OR REPLACE FUNCTION get_correlated_events(v_correlation_id text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_correlated_events$
SELECT *
FROM events e
WHERE e.metadata ? 'correlation_id'
  AND e.metadata ->> 'correlation_id' = v_correlation_id
ORDER BY e."offset";
$get_correlated_events$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION
    lease_events(text, int, int, int, int),
    lease_events(text, int, int, int),
    claim_parked_event(text),
    append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint, boolean, jsonb),
    append_events(text, text, uuid, uuid, jsonb, boolean, jsonb)
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever could call a function before may call it now: the re-created ones are granted as the ones they replace
-- were, the new overloads as their siblings are, and get_correlated_events as get_events(text, text) is (to PUBLIC,
-- unless the least-privilege script revoked that).
DO
$grant_like_before$
DECLARE
    v_pair    record;
    v_grantee text;
BEGIN
    FOR v_pair IN SELECT p.fn, p.sibling
                  FROM (VALUES ('lease_events(text, int, int, int, int)'::regprocedure,
                                'lease_events_before_metadata(text, int, int, int, int)'::regprocedure),
                               ('lease_events(text, int, int, int)'::regprocedure,
                                'lease_events_before_metadata(text, int, int, int)'::regprocedure),
                               ('claim_parked_event(text)'::regprocedure,
                                'claim_parked_event_before_metadata(text)'::regprocedure),
                               ('append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint, boolean, jsonb)'::regprocedure,
                                'append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint, boolean)'::regprocedure),
                               ('append_events(text, text, uuid, uuid, jsonb, boolean, jsonb)'::regprocedure,
                                'append_events(text, text, uuid, uuid, jsonb)'::regprocedure),
                               ('get_correlated_events(text)'::regprocedure, 'get_events(text, text)'::regprocedure))
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
END
$grant_like_before$;
--> statement-breakpoint
DROP FUNCTION lease_events_before_metadata(text, int, int, int, int);
--> statement-breakpoint
DROP FUNCTION lease_events_before_metadata(text, int, int, int);
--> statement-breakpoint
DROP FUNCTION claim_parked_event_before_metadata(text);
