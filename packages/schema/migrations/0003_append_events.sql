-- Custom SQL migration: append_events, the batch form of append_event that typed clients use.
-- append_event stays exactly as it is, for fstore-sql's clients.

-- API: append the events of one command to one stream, atomically and in one round trip, chained by previous_id
-- after v_previous_id (null: the stream must not exist yet). Each row passes the same trigger checks as
-- append_event. v_events is a JSON array of {"event", "event_id", "data", "event_version" (default 1), "final"
-- (default false)}; the events share v_command_id.
--
-- It is safe to retry after a lost answer (a dropped connection, when the client cannot know whether the commit
-- happened): if the first event id is already stored with the same content, chain and command, the stored events
-- are returned and nothing is written. The same id with other content is a unique violation on
-- events_event_id_key.
--
-- A writer whose expectation is stale gets check_violation 'events_expected_last_event', with a DETAIL of JSON
-- {"expected": ..., "found": ...} so that typed clients can report both without parsing prose. Two writers that
-- pass this check at once still collide on events_previous_id_key or events_first_event_key.
-- Example: SELECT * FROM append_events('decider1', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', NULL,
--          'f156a3c4-9bd8-11ed-a8fc-0242ac120002',
--          '[{"event": "event1", "event_id": "21e19516-9bda-11ed-a8fc-0242ac120002", "data": {}}]');
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$append_events$
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
    -- the same statement), and the lock rows are advanced once per stream.
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
                                     previous_id, final)
                     SELECT b.event, b.event_id, b.event_version, v_decider, v_decider_id, b.data, v_command_id,
                            coalesce(lag(b.event_id) OVER (ORDER BY b.n), v_previous_id), b.final
                     FROM batch b
                     ORDER BY b.n
                     RETURNING *)
        SELECT *
        FROM inserted
        ORDER BY inserted."offset";
END;
$append_events$;
