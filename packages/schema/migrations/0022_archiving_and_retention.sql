-- Custom SQL migration: archiving and retention. A closed (final) stream that every view has handled can be
-- archived: its events move, whole and unchanged, from events to archived_events (0021), so that the tables and
-- indexes that appends and leases use hold the open part of the log only. Loads still find them (get_events,
-- get_last_event and get_event read both tables), and archived_streams says which streams went, when and by whom.
-- Retention removes the archived streams closed before a given age, in batches, with an audit row (retention_runs).
-- Both are the owner's operations, granted to no role: the application role still cannot remove an event.
--
-- Why a cold table and not declarative partitioning: a partitioned events table needs the partition key in every
-- unique constraint, and the log's guarantees are global keys (event_id, previous_id, offset, one first and one
-- final event per stream); a row that moves between partitions is a DELETE and an INSERT all the same; and turning
-- an existing log into a partitioned one rewrites it whole. A cold table leaves events as it is and moves only
-- what leaves it.

-- The one gate through which the log loses rows: a setting that the owner's archive and retention functions set
-- for their own transaction, honoured only for a role that owns the table. For everyone else a DELETE is still a
-- no-op (or 42501 without the privilege), as in 0007.
CREATE OR REPLACE RULE ignore_delete_events AS ON DELETE TO events
    WHERE has_table_privilege('public.events'::regclass, 'DELETE')
        AND NOT (coalesce(current_setting('fstore.moving_history', true), '') = 'on'
            AND pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = 'public.events'::regclass),
                            'MEMBER'))
    DO INSTEAD NOTHING;
--> statement-breakpoint
-- The archive keeps the log's promises: no UPDATE, no DELETE but retention's, no TRUNCATE.
CREATE OR REPLACE RULE ignore_update_archived_events AS ON UPDATE TO archived_events
    WHERE has_table_privilege('public.archived_events'::regclass, 'UPDATE') DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_delete_archived_events AS ON DELETE TO archived_events
    WHERE has_table_privilege('public.archived_events'::regclass, 'DELETE')
        AND NOT (coalesce(current_setting('fstore.moving_history', true), '') = 'on'
            AND pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                             WHERE c.oid = 'public.archived_events'::regclass), 'MEMBER'))
    DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE TRIGGER t_forbid_truncate
    BEFORE TRUNCATE
    ON archived_events
    FOR EACH STATEMENT
EXECUTE FUNCTION forbid_truncate();
--> statement-breakpoint
-- An archived stream is closed, though its final event left the log: a first event under its id, or one that names
-- an archived event as its previous, is refused as an append to a closed stream. Only those two paths look at
-- archived_streams, so appends to streams that are not new pay nothing for it.
CREATE OR REPLACE FUNCTION check_event_append() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$check_event_append$
DECLARE
    v_previous_offset bigint;
BEGIN
    -- A null stream or decider fails on the columns' NOT NULL constraints, which PostgreSQL checks after this
    -- trigger: leave it to them, rather than report it as a previous_id in another stream.
    IF NEW.decider IS NULL OR NEW.decider_id IS NULL THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1
               FROM events e
               WHERE e.decider_id = NEW.decider_id
                 AND e.decider = NEW.decider
                 AND e.final) THEN
        RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed, you can not append events to it.'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                  DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
    END IF;
    IF NEW.previous_id IS NULL THEN
        IF EXISTS (SELECT 1
                   FROM events e
                   WHERE e.decider_id = NEW.decider_id
                     AND e.decider = NEW.decider
                     AND e.previous_id IS NULL) THEN
            RAISE EXCEPTION 'previous_id can only be null for the first decider event'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_previous_id_required',
                      DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
        END IF;
        -- Asked after the log (a statement of its own, so it sees an archiving that committed in between).
        IF EXISTS (SELECT 1 FROM archived_streams a WHERE a.decider = NEW.decider AND a.decider_id = NEW.decider_id) THEN
            RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed (archived), you can not append events to it.'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                      DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
        END IF;
    ELSE
        SELECT e."offset"
        INTO v_previous_offset
        FROM events e
        WHERE e.event_id = NEW.previous_id
          AND e.decider_id = NEW.decider_id
          AND e.decider = NEW.decider;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1
                       FROM archived_streams a
                       WHERE a.decider = NEW.decider
                         AND a.decider_id = NEW.decider_id) THEN
                RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed (archived), you can not append events to it.'
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                          DETAIL = format('decider %s, decider_id %s', NEW.decider, NEW.decider_id);
            END IF;
            RAISE EXCEPTION 'previous_id must be in the same decider'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_previous_id_same_stream',
                      DETAIL = format('decider %s, decider_id %s, previous_id %s', NEW.decider, NEW.decider_id,
                                      NEW.previous_id);
        END IF;
        -- A sequence that hands out cached blocks per connection (YugabyteDB's default) can give this event a
        -- smaller offset than the one before it. Within a stream the order must hold, so draw again until it does.
        WHILE NEW."offset" <= v_previous_offset LOOP
            NEW."offset" := nextval(pg_get_serial_sequence('events', 'offset'));
        END LOOP;
    END IF;
    RETURN NEW;
END;
$check_event_append$;
--> statement-breakpoint
-- An append that names an archived stream's last event fails as an append to a closed stream (what it is), not as
-- a stale expectation. The rest is 0016's body.
CREATE OR REPLACE FUNCTION append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid,
                                         v_events jsonb, v_once_per_command boolean, v_metadata jsonb)
    RETURNS SETOF events
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
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
        -- Only on this error path: a stream that was archived (0022) is closed, not somewhere else.
        IF EXISTS (SELECT 1 FROM archived_streams a WHERE a.decider = v_decider AND a.decider_id = v_decider_id) THEN
            RAISE EXCEPTION 'last event for this decider stream is already final. the stream is closed (archived), you can not append events to it.'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'events_stream_not_final',
                      DETAIL = format('decider %s, decider_id %s', v_decider, v_decider_id);
        END IF;
        -- Where does the stream really end?
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
$append_events$;
--> statement-breakpoint
-- Loading reads the archive too: a stream is wholly in one table or the other, and an archived one loads as it did
-- before it moved. A stream that was never archived costs one more index probe, into an empty range.
CREATE OR REPLACE FUNCTION get_events(v_decider_id text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_events$
SELECT *
FROM (SELECT * FROM events e WHERE e.decider_id = v_decider_id
      UNION ALL
      SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id) s
ORDER BY s."offset";
$get_events$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION get_events(v_decider_id text, v_decider text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_events$
SELECT *
FROM (SELECT * FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider
      UNION ALL
      SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id AND a.decider = v_decider) s
ORDER BY s."offset";
$get_events$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION get_events(v_decider_id text, v_decider text, v_after_offset bigint, v_limit int)
    RETURNS SETOF events
    LANGUAGE plpgsql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_events$
BEGIN
    IF v_after_offset IS NULL OR v_limit IS NULL OR v_limit < 1 THEN
        RAISE EXCEPTION 'get_events: after_offset must be given and limit must be one or more, got % and %',
            v_after_offset, v_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- PL/pgSQL keeps the plan across pages (a SQL function with a SET clause would plan every call).
    RETURN QUERY SELECT *
                 FROM ((SELECT *
                        FROM events e
                        WHERE e.decider_id = v_decider_id
                          AND e.decider = v_decider
                          AND e."offset" > v_after_offset
                        ORDER BY e."offset"
                        LIMIT v_limit)
                       UNION ALL
                       (SELECT *
                        FROM archived_events a
                        WHERE a.decider_id = v_decider_id
                          AND a.decider = v_decider
                          AND a."offset" > v_after_offset
                        ORDER BY a."offset"
                        LIMIT v_limit)) s
                 ORDER BY s."offset"
                 LIMIT v_limit;
END;
$get_events$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION get_last_event(v_decider_id text, v_decider text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_last_event$
SELECT *
FROM ((SELECT * FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider
       ORDER BY e."offset" DESC LIMIT 1)
      UNION ALL
      (SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id AND a.decider = v_decider
       ORDER BY a."offset" DESC LIMIT 1)) s
ORDER BY s."offset" DESC
LIMIT 1;
$get_last_event$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION get_event(v_event_id uuid)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_event$
SELECT * FROM events e WHERE e.event_id = v_event_id
UNION ALL
SELECT * FROM archived_events a WHERE a.event_id = v_event_id;
$get_event$;
--> statement-breakpoint
-- API: whether a stream was archived, and whether retention has removed it since (removed_at). No row: it was not.
-- Example: SELECT * FROM get_archived_stream('order-1', 'Order');
CREATE OR REPLACE FUNCTION get_archived_stream(v_decider_id text, v_decider text)
    RETURNS SETOF archived_streams
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$get_archived_stream$
SELECT * FROM archived_streams a WHERE a.decider = v_decider AND a.decider_id = v_decider_id;
$get_archived_stream$;
--> statement-breakpoint
-- Helper: the first view (by name) that has not handled every event of a stream yet: an event past its frontier, a
-- lock row with events unacknowledged (leased, waiting, or stopped), or a parked event. Null: every view that
-- subscribes to the decider is done with it, so moving it out of the log takes nothing from any of them.
CREATE OR REPLACE FUNCTION view_holding_stream(v_decider text, v_decider_id text)
    RETURNS text
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$view_holding_stream$
SELECT v.view
FROM views v
         JOIN view_frontiers f ON f.view = v.view
WHERE (v.subscribed_deciders IS NULL OR v_decider = ANY (v.subscribed_deciders))
  AND (EXISTS (SELECT 1
               FROM events e
               WHERE e.decider_id = v_decider_id
                 AND e.decider = v_decider
                 AND (e.transaction_id, e."offset") > (f.transaction_id, f."offset"))
    OR EXISTS (SELECT 1
               FROM locks l
               WHERE l.view = v.view
                 AND l.decider_id = v_decider_id
                 AND l.last_offset < l."offset")
    OR EXISTS (SELECT 1 FROM parked_events p WHERE p.view = v.view AND p.decider_id = v_decider_id))
ORDER BY v.view
LIMIT 1;
$view_holding_stream$;
--> statement-breakpoint
-- Helper: moves closed streams, given as parallel arrays of decider and decider_id, to the archive, and returns how
-- many it moved. Its callers checked that the streams are closed and handled, holding the views' frontiers.
CREATE OR REPLACE FUNCTION move_streams_to_archive(v_deciders text[], v_decider_ids text[])
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$move_streams_to_archive$
DECLARE
    v_moved_deciders text[];
    v_moved_ids      text[];
BEGIN
    -- Each stream's row first: a concurrent call that takes the same stream waits on its key, then moves nothing of
    -- it (by then its events have left the log, and the row is there).
    WITH streams AS (SELECT DISTINCT s.decider, s.decider_id
                     FROM unnest(v_deciders, v_decider_ids) AS s(decider, decider_id)),
         recorded AS (
             INSERT INTO archived_streams (decider, decider_id, events, last_offset, closed_at, archived_by)
                 SELECT s.decider, s.decider_id, t.events, t.last_offset, t.closed_at, session_user
                 FROM streams s
                          CROSS JOIN LATERAL (SELECT count(*)                                  AS events,
                                                     max(e."offset")                           AS last_offset,
                                                     max(e.created_at) FILTER (WHERE e.final) AS closed_at
                                              FROM events e
                                              WHERE e.decider_id = s.decider_id
                                                AND e.decider = s.decider) t
                 WHERE t.closed_at IS NOT NULL
                 ORDER BY s.decider, s.decider_id
                 ON CONFLICT ON CONSTRAINT archived_streams_pkey DO NOTHING
                 RETURNING decider, decider_id)
    SELECT array_agg(r.decider), array_agg(r.decider_id)
    INTO v_moved_deciders, v_moved_ids
    FROM recorded r;
    IF v_moved_ids IS NULL THEN
        RETURN 0;
    END IF;
    INSERT INTO archived_events
    SELECT e.*
    FROM unnest(v_moved_deciders, v_moved_ids) AS m(decider, decider_id)
             JOIN events e ON e.decider_id = m.decider_id AND e.decider = m.decider
    ORDER BY e."offset";
    -- Through the gate of ignore_delete_events, for this statement only. The snapshots of these streams go with
    -- their events (the foreign key's cascade): a closed stream handles no command.
    PERFORM set_config('fstore.moving_history', 'on', true);
    DELETE
    FROM events e
        USING unnest(v_moved_deciders, v_moved_ids) AS m(decider, decider_id)
    WHERE e.decider_id = m.decider_id
      AND e.decider = m.decider;
    PERFORM set_config('fstore.moving_history', '', true);
    -- Lock rows that no event needs any more (no row reads as handled to the frontier), unless another decider's
    -- stream shares the id. Taken in decider_id order, as every writer of many lock rows takes them.
    DELETE
    FROM locks l
    WHERE (l.view, l.decider_id) IN (SELECT k.view, k.decider_id
                                     FROM locks k
                                     WHERE k.decider_id = ANY (v_moved_ids)
                                       AND k.last_offset >= k."offset"
                                       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.decider_id = k.decider_id)
                                     ORDER BY k.decider_id, k.view
                                     FOR UPDATE);
    RETURN cardinality(v_moved_ids);
END;
$move_streams_to_archive$;
--> statement-breakpoint
-- API, for the owner only (never granted by least-privilege.sql): archives one closed stream, which every view has
-- handled. Its events move to archived_events, its snapshots and lock rows go; get_events still loads it, and
-- get_archived_stream says it was archived. Returns the stream's archived_streams row; a stream archived before is
-- returned as it is.
-- Example: SELECT * FROM archive_stream('Order', 'order-1');
CREATE OR REPLACE FUNCTION archive_stream(v_decider text, v_decider_id text)
    RETURNS SETOF archived_streams
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$archive_stream$
DECLARE
    v_view text;
BEGIN
    IF v_decider IS NULL OR v_decider = '' OR v_decider_id IS NULL OR v_decider_id = '' THEN
        RAISE EXCEPTION 'archive_stream: decider and decider_id must be names, got % and %',
            coalesce(quote_literal(v_decider), 'null'), coalesce(quote_literal(v_decider_id), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Waits for the consumers that are advancing a view (they skip it meanwhile), so that what is asked below is
    -- what the views have read.
    PERFORM 1 FROM view_frontiers f ORDER BY f.view FOR SHARE;
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider) THEN
        RETURN QUERY SELECT * FROM archived_streams a WHERE a.decider = v_decider AND a.decider_id = v_decider_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'archive_stream: there is no stream % of decider %', v_decider_id, v_decider
                USING ERRCODE = 'no_data_found';
        END IF;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider AND e.final) THEN
        RAISE EXCEPTION 'archive_stream: stream % of decider % is open: only a closed stream (its last event final) can be archived',
            v_decider_id, v_decider
            USING ERRCODE = 'object_not_in_prerequisite_state', CONSTRAINT = 'archived_streams_closed',
                  DETAIL = json_build_object('decider', v_decider, 'decider_id', v_decider_id)::text;
    END IF;
    v_view := view_holding_stream(v_decider, v_decider_id);
    IF v_view IS NOT NULL THEN
        RAISE EXCEPTION 'archive_stream: view % has not handled every event of stream % of decider % yet', v_view,
            v_decider_id, v_decider
            USING ERRCODE = 'object_not_in_prerequisite_state', CONSTRAINT = 'archived_streams_handled',
                  DETAIL = json_build_object('view', v_view)::text,
                  HINT = 'Archive it once the view has acknowledged its events (and its parked events are retried or discarded).';
    END IF;
    PERFORM move_streams_to_archive(ARRAY [v_decider], ARRAY [v_decider_id]);
    RETURN QUERY SELECT * FROM archived_streams a WHERE a.decider = v_decider AND a.decider_id = v_decider_id;
END;
$archive_stream$;
--> statement-breakpoint
-- API, for the owner only: archives up to v_max_streams streams closed before v_closed_before that every view has
-- handled, oldest first, and returns how many. Call it again until it returns 0: each call is one batch (in
-- autocommit, one short transaction). Streams a view has not handled yet are left for a later call.
-- Example: SELECT archive_closed_streams(now() - interval '30 days', 1000);
CREATE OR REPLACE FUNCTION archive_closed_streams(v_closed_before timestamptz, v_max_streams integer DEFAULT 1000)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$archive_closed_streams$
DECLARE
    v_deciders text[];
    v_ids      text[];
BEGIN
    IF v_closed_before IS NULL OR v_max_streams IS NULL OR v_max_streams < 1 THEN
        RAISE EXCEPTION 'archive_closed_streams: closed_before must be given and max streams must be one or more, got % and %',
            v_closed_before, v_max_streams
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM view_frontiers f ORDER BY f.view FOR SHARE;
    SELECT array_agg(c.decider), array_agg(c.decider_id)
    INTO v_deciders, v_ids
    FROM (SELECT e.decider, e.decider_id
          FROM events e
          WHERE e.final
            AND e.created_at < v_closed_before
            AND view_holding_stream(e.decider, e.decider_id) IS NULL
          ORDER BY e."offset"
          LIMIT v_max_streams) c;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN move_streams_to_archive(v_deciders, v_ids);
END;
$archive_closed_streams$;
--> statement-breakpoint
-- API, for the owner only: retention. Removes for good the events of up to v_max_streams archived streams closed
-- more than v_older_than ago, oldest first, and returns how many streams; their archived_streams rows stay, with
-- removed_at set, and each call that removes anything writes an audit row (retention_runs). Views are not touched:
-- they handled these streams before they were archived. Call it again until it returns 0.
-- Example: SELECT remove_archived_streams(interval '7 years', 1000);
CREATE OR REPLACE FUNCTION remove_archived_streams(v_older_than interval, v_max_streams integer DEFAULT 1000)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$remove_archived_streams$
DECLARE
    v_before   timestamptz;
    v_deciders text[];
    v_ids      text[];
    v_events   bigint;
BEGIN
    IF v_older_than IS NULL OR v_older_than < interval '0' OR v_max_streams IS NULL OR v_max_streams < 1 THEN
        RAISE EXCEPTION 'remove_archived_streams: the age must be zero or more and max streams one or more, got % and %',
            v_older_than, v_max_streams
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_before := now() - v_older_than;
    -- Two calls at once take different streams.
    WITH taken AS (SELECT a.decider, a.decider_id
                   FROM archived_streams a
                   WHERE a.removed_at IS NULL
                     AND a.closed_at < v_before
                   ORDER BY a.closed_at, a.decider, a.decider_id
                   LIMIT v_max_streams FOR UPDATE SKIP LOCKED),
         marked AS (UPDATE archived_streams a
             SET removed_at = now()
             FROM taken t
             WHERE a.decider = t.decider
               AND a.decider_id = t.decider_id
             RETURNING a.decider, a.decider_id, a.events)
    SELECT array_agg(m.decider), array_agg(m.decider_id), sum(m.events)
    INTO v_deciders, v_ids, v_events
    FROM marked m;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('fstore.moving_history', 'on', true);
    DELETE
    FROM archived_events a
        USING unnest(v_deciders, v_ids) AS m(decider, decider_id)
    WHERE a.decider_id = m.decider_id
      AND a.decider = m.decider;
    PERFORM set_config('fstore.moving_history', '', true);
    INSERT INTO retention_runs (closed_before, streams, events, removed_by)
    VALUES (v_before, cardinality(v_ids), v_events, session_user);
    RETURN cardinality(v_ids);
END;
$remove_archived_streams$;
--> statement-breakpoint
-- API: what a view does not read because it left the log: the archived streams of its deciders closed from its
-- start_at on (archived: still loadable one by one; removed: gone), with their events. A view registered or rebuilt
-- from a point before them skips them; a view that was live when they closed had handled them before they moved.
-- Example: SELECT * FROM missing_history('order-summaries');
CREATE OR REPLACE FUNCTION missing_history(v_view text)
    RETURNS TABLE (archived_streams bigint, archived_events bigint, removed_streams bigint, removed_events bigint)
    LANGUAGE plpgsql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$missing_history$
#variable_conflict use_column
BEGIN
    IF NOT EXISTS (SELECT 1 FROM views v WHERE v.view = v_view) THEN
        RAISE EXCEPTION 'missing_history: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT count(*) FILTER (WHERE a.removed_at IS NULL),
                        coalesce(sum(a.events) FILTER (WHERE a.removed_at IS NULL), 0)::bigint,
                        count(*) FILTER (WHERE a.removed_at IS NOT NULL),
                        coalesce(sum(a.events) FILTER (WHERE a.removed_at IS NOT NULL), 0)::bigint
                 FROM views v
                          JOIN archived_streams a
                               ON (v.subscribed_deciders IS NULL OR a.decider = ANY (v.subscribed_deciders))
                                   AND a.closed_at >= v.start_at
                 WHERE v.view = v_view;
END;
$missing_history$;
--> statement-breakpoint
-- Helper: a view that starts reading (registered, or reset to a start point) before streams that left the log says
-- so, as a WARNING that psql prints, instead of skipping them in silence.
CREATE OR REPLACE FUNCTION warn_missing_history(v_view text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$warn_missing_history$
DECLARE
    v_missing record;
BEGIN
    SELECT * INTO v_missing FROM missing_history(v_view);
    IF v_missing.archived_streams + v_missing.removed_streams > 0 THEN
        RAISE WARNING 'view % skips % archived streams (% events) and % streams removed by retention (% events), closed since its start point',
            v_view, v_missing.archived_streams, v_missing.archived_events, v_missing.removed_streams,
            v_missing.removed_events
            USING HINT = 'Archived streams still load one by one (get_events); removed ones are gone. See missing_history(view).';
    END IF;
END;
$warn_missing_history$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION on_insert_or_update_on_views() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$on_insert_or_update_on_views$
BEGIN
    PERFORM reset_view_positions(NEW.view, NEW.start_at);
    PERFORM warn_missing_history(NEW.view);
    RETURN NULL;
END;
$on_insert_or_update_on_views$;
--> statement-breakpoint
-- A reset (a rebuild) says what it will not replay: in the trigger when the view's row changes, here when it does
-- not. The rest is the bodies of 0004 and 0010.
CREATE OR REPLACE FUNCTION reset_view(v_view text, v_start_at timestamp)
    RETURNS SETOF views
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$reset_view$
DECLARE
    v_current timestamp;
BEGIN
    SELECT v.start_at INTO v_current FROM views v WHERE v.view = v_view FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reset_view: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_current IS NOT DISTINCT FROM v_start_at THEN
        -- The start_at trigger will not fire for an unchanged value: reset here.
        PERFORM reset_view_positions(v_view, v_start_at);
        PERFORM warn_missing_history(v_view);
    END IF;
    RETURN QUERY UPDATE views v SET start_at = v_start_at WHERE v.view = v_view RETURNING v.*;
END;
$reset_view$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION reset_view(v_view text, v_start_at timestamp, v_deciders text[], v_event_types text[])
    RETURNS SETOF views
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$reset_view$
DECLARE
    v_current       views;
    v_deciders_list text[] := subscription_list('reset_view', 'deciders', v_deciders);
    v_events_list   text[] := subscription_list('reset_view', 'event types', v_event_types);
BEGIN
    SELECT * INTO v_current FROM views v WHERE v.view = v_view FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reset_view: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    -- The update's trigger resets the view when something changed; when nothing did, reset it here.
    PERFORM reset_view_positions(v_view, v_start_at);
    RETURN QUERY UPDATE views v
        SET start_at            = v_start_at,
            subscribed_deciders = v_deciders_list,
            subscribed_events   = v_events_list
        WHERE v.view = v_view
        RETURNING v.*;
    -- When something changed, the update's trigger said it.
    IF v_current.start_at IS NOT DISTINCT FROM v_start_at
        AND v_current.subscribed_deciders IS NOT DISTINCT FROM v_deciders_list
        AND v_current.subscribed_events IS NOT DISTINCT FROM v_events_list THEN
        PERFORM warn_missing_history(v_view);
    END IF;
END;
$reset_view$;
--> statement-breakpoint
-- view_status gains two columns, archived_streams and archived_events: how much of what the view reads has left the
-- log. PostgreSQL cannot change a function's result type in place: the old one moves aside, so that its grants can
-- be copied to the new one, then goes.
ALTER FUNCTION view_status() RENAME TO view_status_before_archiving;
--> statement-breakpoint
CREATE FUNCTION view_status()
    RETURNS TABLE (view text, streams bigint, pending_streams bigint, leased_streams bigint, stopped_streams bigint,
                   events_behind bigint, oldest_unacked_at timestamptz, parked_events bigint,
                   subscribed_deciders text[], subscribed_events text[], archived_streams bigint,
                   archived_events bigint)
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$view_status$
SELECT v.view,
       (SELECT count(*) FROM locks l WHERE l.view = v.view),
       coalesce(p.pending_streams, 0),
       coalesce(p.leased_streams, 0),
       coalesce(p.stopped_streams, 0),
       coalesce(p.events_behind, 0) + coalesce(f.events, 0),
       CASE
           WHEN p.oldest_unacked_at IS NULL THEN f.oldest
           WHEN f.oldest IS NULL THEN p.oldest_unacked_at
           ELSE least(p.oldest_unacked_at, f.oldest) END,
       (SELECT count(*) FROM parked_events pe WHERE pe.view = v.view),
       v.subscribed_deciders,
       v.subscribed_events,
       coalesce(a.streams, 0),
       coalesce(a.events, 0)
FROM views v
         LEFT JOIN view_frontiers vf ON vf.view = v.view
         LEFT JOIN LATERAL (SELECT count(*)                                                        AS pending_streams,
                                   count(*) FILTER (WHERE l.locked_until > now() AND l.locked_until < 'infinity')
                                                                                                   AS leased_streams,
                                   count(*) FILTER (WHERE l.locked_until = 'infinity')             AS stopped_streams,
                                   sum(behind.events)                                              AS events_behind,
                                   min(behind.oldest)                                              AS oldest_unacked_at
                            FROM locks l
                                     CROSS JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
                                                         FROM events e
                                                         WHERE e.decider_id = l.decider_id
                                                           AND e."offset" > l.last_offset
                                                           -- later ones are past the frontier (below)
                                                           AND e."offset" <= l."offset"
                                                           AND (v.subscribed_deciders IS NULL
                                                             OR e.decider = ANY (v.subscribed_deciders))
                                                           AND (v.subscribed_events IS NULL
                                                             OR e.event = ANY (v.subscribed_events))) behind
                            WHERE l.view = v.view
                              AND l.last_offset < l."offset") p ON true
         -- Past the frontier: appended, not yet read into lock rows. Events created before start_at are skipped.
         LEFT JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
                            FROM events e
                            WHERE (e.transaction_id, e."offset") > (vf.transaction_id, vf."offset")
                              AND e.created_at >= v.start_at
                              AND (v.subscribed_deciders IS NULL OR e.decider = ANY (v.subscribed_deciders))
                              AND (v.subscribed_events IS NULL OR e.event = ANY (v.subscribed_events))) f ON true
         -- Left the log: the archived streams (removed since, or not) that the view reads, closed from start_at on.
         LEFT JOIN LATERAL (SELECT count(*) AS streams, sum(ar.events)::bigint AS events
                            FROM archived_streams ar
                            WHERE (v.subscribed_deciders IS NULL OR ar.decider = ANY (v.subscribed_deciders))
                              AND ar.closed_at >= v.start_at) a ON true
ORDER BY v.view;
$view_status$;
--> statement-breakpoint
-- (append_events and reset_view were never PUBLIC's: CREATE OR REPLACE keeps their grants, and this says so again.)
REVOKE EXECUTE ON FUNCTION
    append_events(text, text, uuid, uuid, jsonb, boolean, jsonb),
    reset_view(text, timestamp),
    reset_view(text, timestamp, text[], text[]),
    archive_stream(text, text),
    archive_closed_streams(timestamptz, integer),
    remove_archived_streams(interval, integer),
    move_streams_to_archive(text[], text[])
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever could call view_status may call the new one; get_archived_stream and missing_history are granted as
-- get_events(text, text) is, and the new tables as events is (SELECT only). The archive and retention functions are
-- granted to nobody.
DO
$grant_like_siblings$
DECLARE
    v_pair    record;
    v_grantee text;
BEGIN
    FOR v_pair IN SELECT p.fn, p.sibling
                  FROM (VALUES ('view_status()'::regprocedure, 'view_status_before_archiving()'::regprocedure),
                               ('get_archived_stream(text, text)'::regprocedure, 'get_events(text, text)'::regprocedure),
                               ('missing_history(text)'::regprocedure, 'get_events(text, text)'::regprocedure))
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
            EXECUTE format('GRANT SELECT ON TABLE public.archived_events, public.archived_streams, public.retention_runs TO %s',
                           v_grantee);
        END LOOP;
END
$grant_like_siblings$;
--> statement-breakpoint
DROP FUNCTION view_status_before_archiving();
