-- Custom SQL migration: the event-sourcing half of the fstore-sql API (immutability, append checks, functions).
-- One statement per chunk: drizzle's migrator splits on the breakpoint marker and PGlite runs each chunk as one
-- prepared statement.

-- Immutable deciders: fstore-sql's rules turn UPDATE and DELETE into no-ops, and clients rely on that.
CREATE OR REPLACE RULE ignore_delete_decider_events AS ON DELETE TO deciders DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_update_decider_events AS ON UPDATE TO deciders DO INSTEAD NOTHING;
--> statement-breakpoint
-- Immutable events, likewise.
CREATE OR REPLACE RULE ignore_delete_events AS ON DELETE TO events DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_update_events AS ON UPDATE TO events DO INSTEAD NOTHING;
--> statement-breakpoint
-- Rules do not apply to TRUNCATE, which would silently erase the log: refuse it with a trigger.
CREATE OR REPLACE FUNCTION forbid_truncate() RETURNS trigger
    LANGUAGE plpgsql AS
$forbid_truncate$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE is not allowed', TG_TABLE_NAME
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'fstore never deletes history. Drop the trigger t_forbid_truncate only if you really mean to.';
END;
$forbid_truncate$;
--> statement-breakpoint
CREATE TRIGGER t_forbid_truncate
    BEFORE TRUNCATE
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION forbid_truncate();
--> statement-breakpoint
CREATE TRIGGER t_forbid_truncate
    BEFORE TRUNCATE
    ON deciders
    FOR EACH STATEMENT
EXECUTE FUNCTION forbid_truncate();
--> statement-breakpoint
-- Every insert into events, through append_event or a plain INSERT, passes fstore-sql's three checks, in
-- fstore-sql's order and with its exact messages (clients match on them). Each error also carries a SQLSTATE and a
-- constraint name, so typed clients can map it without reading the text.
--
-- fstore-sql ran three triggers with an EXISTS scan of the stream each. Here every question is one probe of a
-- unique index, so an append costs the same on the thousandth event of a stream as on the first:
--   is the stream closed?            events_final_key      (only final events are indexed)
--   does the stream have events?     events_first_event_key (one first event per stream)
--   is previous_id in this stream?   events_event_id_key
-- (Asking for "the stream's last event" instead, with ORDER BY offset DESC LIMIT 1, lets the planner choose a
-- bitmap scan and a sort when it believes a stream is short, and then every append reads the whole stream.)
--
-- The races are settled by unique indexes, not by these reads: two writers after the same event collide on
-- events_previous_id_key, two writers of a first event on events_first_event_key.
CREATE OR REPLACE FUNCTION check_event_append() RETURNS trigger
    LANGUAGE plpgsql AS
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
    ELSE
        SELECT e."offset"
        INTO v_previous_offset
        FROM events e
        WHERE e.event_id = NEW.previous_id
          AND e.decider_id = NEW.decider_id
          AND e.decider = NEW.decider;
        IF NOT FOUND THEN
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
CREATE TRIGGER t_check_event_append
    BEFORE INSERT
    ON events
    FOR EACH ROW
EXECUTE FUNCTION check_event_append();
--> statement-breakpoint
-- API: register an event type (and version) that a decider may publish. Events of unregistered types are refused
-- by the events_decider_event_fkey foreign key.
-- Registering is idempotent, unlike fstore-sql's plain INSERT: applications register their event types at every
-- start-up. It returns the registered row, new or existing; an existing row keeps its description (deciders are
-- immutable). ON CONFLICT is not an option: PostgreSQL refuses it on a table with UPDATE rules.
-- Example: SELECT * FROM register_decider_event('decider1', 'event1', 'description of event1 v2', 2);
CREATE OR REPLACE FUNCTION register_decider_event(v_decider text, v_event text, v_description text,
                                                  v_event_version bigint DEFAULT 1)
    RETURNS SETOF deciders
    LANGUAGE plpgsql AS
$register_decider_event$
BEGIN
    IF NOT EXISTS (SELECT 1
                   FROM deciders d
                   WHERE d.decider = v_decider
                     AND d.event = v_event
                     AND d.event_version = v_event_version) THEN
        BEGIN
            INSERT INTO deciders (decider, event, event_version, description)
            VALUES (v_decider, v_event, v_event_version, v_description);
        EXCEPTION
            -- Another session registered the same type meanwhile: that is the outcome we wanted.
            WHEN unique_violation THEN NULL;
        END;
    END IF;
    RETURN QUERY SELECT *
                 FROM deciders d
                 WHERE d.decider = v_decider
                   AND d.event = v_event
                   AND d.event_version = v_event_version;
END;
$register_decider_event$;
--> statement-breakpoint
-- API (fstore-sql's first form): SELECT * FROM register_decider_event('decider1', 'event1');
CREATE OR REPLACE FUNCTION register_decider_event(v_decider text, v_event text)
    RETURNS SETOF deciders
    LANGUAGE sql AS
$register_decider_event_short$
SELECT *
FROM register_decider_event(v_decider, v_event, NULL::text, 1::bigint);
$register_decider_event_short$;
--> statement-breakpoint
-- API: append one event. previous_id is the event id the writer saw last in this stream (null for a new stream);
-- if another writer got there first, the insert fails on events_previous_id_key or events_first_event_key.
-- Example: SELECT * FROM append_event('event1', '21e19516-9bda-11ed-a8fc-0242ac120002', 'decider1',
--          'f156a3c4-9bd8-11ed-a8fc-0242ac120002', '{}', 'f156a3c4-9bd8-11ed-a8fc-0242ac120002', null);
CREATE OR REPLACE FUNCTION append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text,
                                        v_data jsonb, v_command_id uuid, v_previous_id uuid,
                                        v_event_version bigint DEFAULT 1)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$append_event$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id)
        RETURNING *;
END;
$append_event$;
--> statement-breakpoint
-- API: append one event and say whether it closes the stream. fstore-sql's append_event has no way to write a
-- final event; this form adds one without changing the 7- and 8-argument calls.
CREATE OR REPLACE FUNCTION append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text,
                                        v_data jsonb, v_command_id uuid, v_previous_id uuid,
                                        v_event_version bigint, v_final boolean)
    RETURNS SETOF events
    LANGUAGE plpgsql AS
$append_final_event$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id,
                coalesce(v_final, false))
        RETURNING *;
END;
$append_final_event$;
--> statement-breakpoint
-- API: a stream's events in order (the README's one-argument form). Plain SQL, so the planner can inline it.
-- Example: SELECT * FROM get_events('f156a3c4-9bd8-11ed-a8fc-0242ac120002');
CREATE OR REPLACE FUNCTION get_events(v_decider_id text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$get_events$
SELECT *
FROM events
WHERE decider_id = v_decider_id
ORDER BY "offset";
$get_events$;
--> statement-breakpoint
-- API: a stream's events of one decider type, in order.
-- Example: SELECT * FROM get_events('f156a3c4-9bd8-11ed-a8fc-0242ac120002', 'decider1');
CREATE OR REPLACE FUNCTION get_events(v_decider_id text, v_decider text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$get_decider_events$
SELECT *
FROM events
WHERE decider_id = v_decider_id
  AND decider = v_decider
ORDER BY "offset";
$get_decider_events$;
--> statement-breakpoint
-- API: the last event of a stream, for a writer that only needs the previous_id to append after.
-- Unlike fstore-sql, it filters by decider as well as decider_id, as its signature promises.
-- Example: SELECT * FROM get_last_event('f156a3c4-9bd8-11ed-a8fc-0242ac120002', 'decider1');
CREATE OR REPLACE FUNCTION get_last_event(v_decider_id text, v_decider text)
    RETURNS SETOF events
    LANGUAGE sql
    STABLE AS
$get_last_event$
SELECT *
FROM events
WHERE decider_id = v_decider_id
  AND decider = v_decider
ORDER BY "offset" DESC
LIMIT 1;
$get_last_event$;
