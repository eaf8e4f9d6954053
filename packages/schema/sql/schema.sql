-- fstore: the schema its migrations build, as PostgreSQL reports it from a freshly migrated database: tables,
-- sequences, indexes, triggers, rules, and every function's current definition (pg_get_functiondef), in one place.
-- Generated, do not edit: `pnpm check:migrations --write-schema` regenerates it (packages/schema/src/schema-dump.test.ts),
-- and `pnpm check:migrations` fails when it is out of step with the migrations. Not a migration: migrate() builds
-- the schema from migrations/; this file only shows the result.
-- After the migrations 0000_tables to 0030_claims_take_orderly_windows_whole; the same text on PostgreSQL 14 to 18.

-- Tables

CREATE TABLE public.archived_events (
    event text NOT NULL,
    event_id uuid NOT NULL,
    event_version bigint NOT NULL,
    decider text NOT NULL,
    decider_id text NOT NULL,
    data jsonb NOT NULL,
    command_id uuid NOT NULL,
    previous_id uuid,
    final boolean NOT NULL,
    created_at timestamp with time zone NOT NULL,
    "offset" bigint NOT NULL,
    transaction_id xid8 NOT NULL,
    metadata jsonb,
    CONSTRAINT archived_events_pkey PRIMARY KEY ("offset")
);

CREATE TABLE public.archived_streams (
    decider text NOT NULL,
    decider_id text NOT NULL,
    events bigint NOT NULL,
    last_offset bigint NOT NULL,
    closed_at timestamp with time zone NOT NULL,
    archived_at timestamp with time zone DEFAULT now() NOT NULL,
    archived_by text NOT NULL,
    removed_at timestamp with time zone,
    CONSTRAINT archived_streams_pkey PRIMARY KEY (decider, decider_id)
);

CREATE TABLE public.deciders (
    decider text NOT NULL,
    event text NOT NULL,
    event_version bigint DEFAULT 1 NOT NULL,
    description text,
    CONSTRAINT deciders_pkey PRIMARY KEY (decider, event, event_version)
);

CREATE TABLE public.events (
    event text NOT NULL,
    event_id uuid NOT NULL,
    event_version bigint DEFAULT 1 NOT NULL,
    decider text NOT NULL,
    decider_id text NOT NULL,
    data jsonb NOT NULL,
    command_id uuid NOT NULL,
    previous_id uuid,
    final boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    "offset" bigint DEFAULT nextval('events_offset_seq'::regclass) NOT NULL,
    transaction_id xid8 DEFAULT pg_current_xact_id() NOT NULL,
    metadata jsonb,
    CONSTRAINT events_decider_event_fkey FOREIGN KEY (decider, event, event_version) REFERENCES deciders(decider, event, event_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_metadata_check CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'::text AND (metadata - ARRAY['correlation_id'::text, 'causation_id'::text, 'traceparent'::text, 'tracestate'::text, 'headers'::text]) = '{}'::jsonb AND COALESCE(jsonb_typeof(metadata -> 'correlation_id'::text), 'string'::text) = 'string'::text AND COALESCE(length(metadata ->> 'correlation_id'::text), 0) <= 200 AND COALESCE(jsonb_typeof(metadata -> 'causation_id'::text), 'string'::text) = 'string'::text AND COALESCE(length(metadata ->> 'causation_id'::text), 0) <= 200 AND COALESCE(jsonb_typeof(metadata -> 'traceparent'::text), 'string'::text) = 'string'::text AND COALESCE(jsonb_typeof(metadata -> 'tracestate'::text), 'string'::text) = 'string'::text AND COALESCE(jsonb_typeof(metadata -> 'headers'::text), 'object'::text) = 'object'::text AND pg_column_size(metadata) <= 8192),
    CONSTRAINT events_pkey PRIMARY KEY ("offset"),
    CONSTRAINT events_previous_id_key UNIQUE (previous_id)
);

CREATE TABLE public.locks (
    view text NOT NULL,
    decider_id text NOT NULL,
    "offset" bigint NOT NULL,
    last_offset bigint NOT NULL,
    locked_until timestamp with time zone DEFAULT (now() - '00:00:00.001'::interval) NOT NULL,
    offset_final boolean NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    lease_id uuid,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    leased_to bigint,
    CONSTRAINT locks_pkey PRIMARY KEY (view, decider_id),
    CONSTRAINT locks_view_fkey FOREIGN KEY (view) REFERENCES views(view) ON DELETE CASCADE
);

CREATE TABLE public.out_of_order_events (
    transaction_id xid8 NOT NULL,
    "offset" bigint NOT NULL,
    CONSTRAINT out_of_order_events_pkey PRIMARY KEY (transaction_id, "offset")
);

CREATE TABLE public.parked_events (
    view text NOT NULL,
    decider_id text NOT NULL,
    "offset" bigint NOT NULL,
    event_id uuid NOT NULL,
    error text NOT NULL,
    attempts integer NOT NULL,
    stream_stopped boolean NOT NULL,
    parked_at timestamp with time zone DEFAULT now() NOT NULL,
    retry_requested_at timestamp with time zone,
    CONSTRAINT parked_events_pkey PRIMARY KEY (view, "offset"),
    CONSTRAINT parked_events_view_fkey FOREIGN KEY (view) REFERENCES views(view) ON DELETE CASCADE
);

CREATE TABLE public.retention_runs (
    closed_before timestamp with time zone NOT NULL,
    streams bigint NOT NULL,
    events bigint NOT NULL,
    removed_by text NOT NULL,
    removed_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.snapshots (
    decider text NOT NULL,
    decider_id text NOT NULL,
    version text NOT NULL,
    "offset" bigint NOT NULL,
    event_id uuid NOT NULL,
    state jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT snapshots_offset_fkey FOREIGN KEY ("offset") REFERENCES events("offset") ON DELETE CASCADE,
    CONSTRAINT snapshots_pkey PRIMARY KEY (decider, decider_id, version)
);

CREATE TABLE public.subject_erasures (
    subject text NOT NULL,
    key_ids uuid[] NOT NULL,
    forgotten_by text NOT NULL,
    forgotten_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.subject_keys (
    key_id uuid NOT NULL,
    subject text NOT NULL,
    key bytea NOT NULL,
    first boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT subject_keys_key_check CHECK (octet_length(key) = 32),
    CONSTRAINT subject_keys_pkey PRIMARY KEY (key_id)
);

CREATE TABLE public.view_frontiers (
    view text NOT NULL,
    transaction_id xid8 DEFAULT '0'::xid8 NOT NULL,
    "offset" bigint DEFAULT 0 NOT NULL,
    floor_transaction_id xid8 DEFAULT '0'::xid8 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT view_frontiers_pkey PRIMARY KEY (view),
    CONSTRAINT view_frontiers_view_fkey FOREIGN KEY (view) REFERENCES views(view) ON DELETE CASCADE
);

CREATE TABLE public.views (
    view text NOT NULL,
    start_at timestamp without time zone DEFAULT now() NOT NULL,
    lock_timeout_s bigint DEFAULT 300 NOT NULL,
    pooling_delay_s bigint,
    pooling_delay_ms bigint,
    edge_function_url text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    subscribed_deciders text[],
    subscribed_events text[],
    CONSTRAINT views_lock_timeout_s_check CHECK (lock_timeout_s > 0),
    CONSTRAINT views_pkey PRIMARY KEY (view),
    CONSTRAINT views_pooling_delay_ms_check CHECK (pooling_delay_ms >= 0),
    CONSTRAINT views_pooling_delay_s_check CHECK (pooling_delay_s >= 0)
);

-- Sequences

CREATE SEQUENCE public.events_offset_seq AS bigint OWNED BY public.events."offset";

-- Indexes (those that back a constraint are the constraints above)

CREATE INDEX archived_events_decider_id_offset_idx ON public.archived_events USING btree (decider_id, "offset");
CREATE INDEX archived_events_event_id_idx ON public.archived_events USING btree (event_id);
CREATE INDEX archived_streams_decider_closed_at_idx ON public.archived_streams USING btree (decider, closed_at);
CREATE INDEX archived_streams_retention_idx ON public.archived_streams USING btree (closed_at) WHERE (removed_at IS NULL);
CREATE INDEX events_correlation_id_idx ON public.events USING btree (((metadata ->> 'correlation_id'::text)), "offset") WHERE (metadata ? 'correlation_id'::text);
CREATE INDEX events_decider_id_offset_idx ON public.events USING btree (decider_id, "offset");
CREATE UNIQUE INDEX events_final_key ON public.events USING btree (decider_id, decider) WHERE final;
CREATE UNIQUE INDEX events_first_event_key ON public.events USING btree (decider_id, decider) WHERE (previous_id IS NULL);
CREATE INDEX events_transaction_id_offset_idx ON public.events USING btree (transaction_id, "offset");
CREATE INDEX locks_pending_idx ON public.locks USING btree (view, locked_until, "offset") WHERE (last_offset < "offset");
CREATE INDEX out_of_order_events_offset_idx ON public.out_of_order_events USING btree ("offset");
CREATE INDEX parked_events_retry_idx ON public.parked_events USING btree (view, retry_requested_at) WHERE (retry_requested_at IS NOT NULL);
CREATE INDEX snapshots_offset_idx ON public.snapshots USING btree ("offset");
CREATE INDEX subject_erasures_subject_idx ON public.subject_erasures USING btree (subject);
CREATE UNIQUE INDEX subject_keys_first_key ON public.subject_keys USING btree (subject) WHERE first;
CREATE INDEX subject_keys_subject_idx ON public.subject_keys USING btree (subject, created_at);

-- Triggers

CREATE TRIGGER t_forbid_truncate BEFORE TRUNCATE ON archived_events FOR EACH STATEMENT EXECUTE FUNCTION forbid_truncate();
CREATE TRIGGER t_forbid_truncate BEFORE TRUNCATE ON deciders FOR EACH STATEMENT EXECUTE FUNCTION forbid_truncate();
CREATE TRIGGER t_check_event_append BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION check_event_append();
CREATE TRIGGER t_forbid_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION forbid_truncate();
CREATE TRIGGER t_before_update_views_table BEFORE UPDATE ON views FOR EACH ROW EXECUTE FUNCTION before_update_views_table();
CREATE TRIGGER t_on_insert_on_views AFTER INSERT ON views FOR EACH ROW EXECUTE FUNCTION on_insert_or_update_on_views();
CREATE TRIGGER t_on_update_of_what_views_read AFTER UPDATE OF start_at, subscribed_deciders, subscribed_events ON views FOR EACH ROW WHEN (old.start_at IS DISTINCT FROM new.start_at OR old.subscribed_deciders IS DISTINCT FROM new.subscribed_deciders OR old.subscribed_events IS DISTINCT FROM new.subscribed_events) EXECUTE FUNCTION on_insert_or_update_on_views();

-- Rules

CREATE RULE ignore_delete_archived_events AS
    ON DELETE TO archived_events
   WHERE has_table_privilege('archived_events'::regclass::oid, 'DELETE'::text) AND NOT (COALESCE(current_setting('fstore.moving_history'::text, true), ''::text) = 'on'::text AND pg_has_role(( SELECT c.relowner
           FROM pg_class c
          WHERE c.oid = 'archived_events'::regclass::oid), 'MEMBER'::text)) DO INSTEAD NOTHING;
CREATE RULE ignore_update_archived_events AS
    ON UPDATE TO archived_events
   WHERE has_table_privilege('archived_events'::regclass::oid, 'UPDATE'::text) DO INSTEAD NOTHING;
CREATE RULE ignore_delete_decider_events AS
    ON DELETE TO deciders
   WHERE has_table_privilege('deciders'::regclass::oid, 'DELETE'::text) DO INSTEAD NOTHING;
CREATE RULE ignore_update_decider_events AS
    ON UPDATE TO deciders
   WHERE has_table_privilege('deciders'::regclass::oid, 'UPDATE'::text) DO INSTEAD NOTHING;
CREATE RULE ignore_delete_events AS
    ON DELETE TO events
   WHERE has_table_privilege('events'::regclass::oid, 'DELETE'::text) AND NOT (COALESCE(current_setting('fstore.moving_history'::text, true), ''::text) = 'on'::text AND pg_has_role(( SELECT c.relowner
           FROM pg_class c
          WHERE c.oid = 'events'::regclass::oid), 'MEMBER'::text)) DO INSTEAD NOTHING;
CREATE RULE ignore_update_events AS
    ON UPDATE TO events
   WHERE has_table_privilege('events'::regclass::oid, 'UPDATE'::text) DO INSTEAD NOTHING;

-- Functions, by name. SECURITY DEFINER and the fixed search_path are part of each definition; EXECUTE is
-- PostgreSQL's default (everyone) for the read functions and helpers, and the owner's alone for those that write
-- (packages/schema/sql/least-privilege.sql grants it to an application role).

-- ack_event(v_view text, v_decider_id text, v_offset bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.ack_event(v_view text, v_decider_id text, v_offset bigint)
 RETURNS SETOF locks
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id) THEN
        RAISE EXCEPTION 'ack_event: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- fstore-sql answers nothing for a view that does not exist: advance only one that does.
    PERFORM advance_view(f.view) FROM view_frontiers f WHERE f.view = v_view;
    RETURN QUERY UPDATE locks l
        SET locked_until = now(),
            last_offset  = greatest(l.last_offset, v_offset),
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$function$;

-- ack_events(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint, v_release boolean): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.ack_events(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint, v_release boolean DEFAULT true)
 RETURNS SETOF locks
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_lock locks;
BEGIN
    IF v_release IS NULL THEN
        RAISE EXCEPTION 'ack_events: release must be true or false, got NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id) THEN
        RAISE EXCEPTION 'ack_events: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, v_offset),
        locked_until = CASE WHEN v_release THEN now() ELSE l.locked_until END,
        lease_id     = CASE WHEN v_release THEN NULL ELSE l.lease_id END,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id
      AND (l.leased_to IS NULL OR v_offset <= l.leased_to)
    RETURNING l.* INTO v_lock;
    IF NOT FOUND THEN
        PERFORM raise_beyond_lease(v_view, v_decider_id, v_lease_id, v_offset);
        PERFORM raise_lease_lost(v_view, v_decider_id, v_lease_id);
    END IF;
    RETURN NEXT v_lock;
END;
$function$;

-- ack_leases(v_view text, v_acks jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.ack_leases(v_view text, v_acks jsonb)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_count    integer;
    v_expected integer;
BEGIN
    IF v_view IS NULL OR v_acks IS NULL OR jsonb_typeof(v_acks) <> 'array' THEN
        RAISE EXCEPTION 'ack_leases: a view and a JSON array of acknowledgements must be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_expected := jsonb_array_length(v_acks);
    PERFORM 1
    FROM locks l
    WHERE l.view = v_view
      AND l.decider_id IN (SELECT a ->> 'decider_id' FROM jsonb_array_elements(v_acks) AS a)
    ORDER BY l.decider_id
    FOR NO KEY UPDATE;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, x.ack_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    FROM (SELECT a ->> 'decider_id' AS decider_id, (a ->> 'lease_id')::uuid AS lease_id,
                 (a ->> 'offset')::bigint AS ack_offset
          FROM jsonb_array_elements(v_acks) AS a) x
    WHERE l.view = v_view
      AND l.decider_id = x.decider_id
      AND l.lease_id = x.lease_id
      AND (l.leased_to IS NULL OR x.ack_offset <= l.leased_to)
      AND EXISTS (SELECT 1 FROM events e WHERE e."offset" = x.ack_offset AND e.decider_id = x.decider_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count <> v_expected THEN
        RAISE EXCEPTION 'ack_leases: % of % leases of view % are no longer held (or an offset is not one they delivered)',
            v_expected - v_count, v_expected, v_view
            USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held';
    END IF;
    RETURN v_count;
END;
$function$;

-- ack_parked_event(v_view text, v_offset bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.ack_parked_event(v_view text, v_offset bigint)
 RETURNS SETOF parked_events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- advance_view(v_view text, v_max_events integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.advance_view(v_view text, v_max_events integer DEFAULT 10000)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint DEFAULT 1)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id, previous_id)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id)
        RETURNING *;
END;
$function$;

-- append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint, v_final boolean): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint, v_final boolean)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id,
                coalesce(v_final, false))
        RETURNING *;
END;
$function$;

-- append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint, v_final boolean, v_metadata jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_event(v_event text, v_event_id uuid, v_decider text, v_decider_id text, v_data jsonb, v_command_id uuid, v_previous_id uuid, v_event_version bigint, v_final boolean, v_metadata jsonb)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY INSERT INTO events (event, event_id, event_version, decider, decider_id, data, command_id,
                                     previous_id, final, metadata)
        VALUES (v_event, v_event_id, v_event_version, v_decider, v_decider_id, v_data, v_command_id, v_previous_id,
                coalesce(v_final, false), v_metadata)
        RETURNING *;
END;
$function$;

-- append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY SELECT * FROM append_events(v_decider, v_decider_id, v_previous_id, v_command_id, v_events, false,
                                             NULL::jsonb);
END;
$function$;

-- append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb, v_once_per_command boolean): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb, v_once_per_command boolean)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY SELECT * FROM append_events(v_decider, v_decider_id, v_previous_id, v_command_id, v_events,
                                             v_once_per_command, NULL::jsonb);
END;
$function$;

-- append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb, v_once_per_command boolean, v_metadata jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb, v_once_per_command boolean, v_metadata jsonb)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- archive_closed_streams(v_closed_before timestamp with time zone, v_max_streams integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.archive_closed_streams(v_closed_before timestamp with time zone, v_max_streams integer DEFAULT 1000)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- archive_stream(v_decider text, v_decider_id text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.archive_stream(v_decider text, v_decider_id text)
 RETURNS SETOF archived_streams
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- before_update_views_table(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.before_update_views_table()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$function$;

-- check_event_append(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.check_event_append()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_previous_offset bigint;
    v_previous_xid    xid8;
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
        SELECT e."offset", e.transaction_id
        INTO v_previous_offset, v_previous_xid
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
        -- This event comes before its previous one in the log's order: this transaction took its id before the
        -- previous event's did, and appended after that one committed. Log batches look its previous event up.
        IF ((v_previous_xid, v_previous_offset) >= (NEW.transaction_id, NEW."offset")) IS NOT FALSE THEN
            INSERT INTO out_of_order_events (transaction_id, "offset") VALUES (NEW.transaction_id, NEW."offset");
        END IF;
    END IF;
    RETURN NEW;
END;
$function$;

-- claim_log_batch(v_view text, v_max_events integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.claim_log_batch(v_view text, v_max_events integer DEFAULT 1000)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'force_custom_plan'
 SET enable_seqscan TO 'off'
AS $function$
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
$function$;

-- claim_parked_event(v_view text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.claim_parked_event(v_view text)
 RETURNS TABLE(attempts integer, event text, event_id uuid, event_version bigint, decider text, decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean, created_at timestamp with time zone, "offset" bigint, transaction_id xid8, metadata jsonb)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- delete_snapshots(v_decider text, v_version text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.delete_snapshots(v_decider text, v_version text DEFAULT NULL::text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- discard_parked_event(v_view text, v_offset bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.discard_parked_event(v_view text, v_offset bigint)
 RETURNS SETOF parked_events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_parked parked_events;
BEGIN
    DELETE FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset RETURNING p.* INTO v_parked;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no event is parked at offset % for view %', v_offset, v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_parked.stream_stopped THEN
        UPDATE locks l
        SET last_offset  = greatest(l.last_offset, v_offset),
            locked_until = now(),
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_parked.decider_id;
    END IF;
    RETURN NEXT v_parked;
END;
$function$;

-- fail_event(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint, v_error text, v_retry_ms bigint, v_max_attempts integer, v_stop_stream boolean): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.fail_event(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint, v_error text, v_retry_ms bigint, v_max_attempts integer, v_stop_stream boolean DEFAULT false)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_attempts int;
    v_event_id uuid;
BEGIN
    IF v_retry_ms IS NULL OR v_retry_ms < 0 THEN
        RAISE EXCEPTION 'fail_event: retry delay must be zero or more milliseconds, got %', v_retry_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_max_attempts IS NULL OR v_stop_stream IS NULL THEN
        RAISE EXCEPTION 'fail_event: max attempts and stop stream must not be null, got % and %', v_max_attempts,
            v_stop_stream
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT e.event_id INTO v_event_id FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id;
    IF v_event_id IS NULL THEN
        RAISE EXCEPTION 'fail_event: offset % is not an event of stream %', v_offset, v_decider_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET attempts   = l.attempts + 1,
        last_error = v_error,
        updated_at = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id
      AND (l.leased_to IS NULL OR v_offset <= l.leased_to)
    RETURNING l.attempts INTO v_attempts;
    IF NOT FOUND THEN
        PERFORM raise_beyond_lease(v_view, v_decider_id, v_lease_id, v_offset);
        PERFORM raise_lease_lost(v_view, v_decider_id, v_lease_id);
    END IF;
    IF v_attempts < greatest(v_max_attempts, 1) THEN
        UPDATE locks l
        SET locked_until = now() + v_retry_ms * interval '1 millisecond',
            lease_id     = NULL
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id;
        RETURN 'retry';
    END IF;
    INSERT INTO parked_events (view, decider_id, "offset", event_id, error, attempts, stream_stopped)
    VALUES (v_view, v_decider_id, v_offset, v_event_id, coalesce(v_error, ''), v_attempts, v_stop_stream)
    ON CONFLICT ON CONSTRAINT parked_events_pkey DO UPDATE
        SET error              = EXCLUDED.error,
            attempts           = EXCLUDED.attempts,
            stream_stopped     = EXCLUDED.stream_stopped,
            parked_at          = now(),
            retry_requested_at = NULL;
    IF v_stop_stream THEN
        UPDATE locks l
        SET locked_until = 'infinity',
            lease_id     = NULL
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id;
        RETURN 'stopped';
    END IF;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, v_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id;
    RETURN 'parked';
END;
$function$;

-- fail_parked_event(v_view text, v_offset bigint, v_error text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.fail_parked_event(v_view text, v_offset bigint, v_error text)
 RETURNS SETOF parked_events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- forbid_truncate(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.forbid_truncate()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE is not allowed', TG_TABLE_NAME
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'fstore never deletes history. Drop the trigger t_forbid_truncate only if you really mean to.';
END;
$function$;

-- forget_subject(v_subject text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.forget_subject(v_subject text)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_key_ids uuid[];
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'forget_subject: the subject must be a name, got %', coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH deleted AS (DELETE FROM subject_keys k WHERE k.subject = v_subject RETURNING k.key_id)
    SELECT coalesce(array_agg(d.key_id), '{}') INTO v_key_ids FROM deleted d;
    DELETE FROM snapshots;
    INSERT INTO subject_erasures (subject, key_ids, forgotten_by) VALUES (v_subject, v_key_ids, session_user);
    RETURN cardinality(v_key_ids);
END;
$function$;

-- get_archived_stream(v_decider_id text, v_decider text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_archived_stream(v_decider_id text, v_decider text)
 RETURNS SETOF archived_streams
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT * FROM archived_streams a WHERE a.decider = v_decider AND a.decider_id = v_decider_id;
$function$;

-- get_correlated_events(v_correlation_id text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_correlated_events(v_correlation_id text)
 RETURNS SETOF events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM events e
WHERE e.metadata ? 'correlation_id'
  AND e.metadata ->> 'correlation_id' = v_correlation_id
ORDER BY e."offset";
$function$;

-- get_event(v_event_id uuid): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_event(v_event_id uuid)
 RETURNS SETOF events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT * FROM events e WHERE e.event_id = v_event_id
UNION ALL
SELECT * FROM archived_events a WHERE a.event_id = v_event_id;
$function$;

-- get_events(v_decider_id text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_events(v_decider_id text)
 RETURNS SETOF events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM (SELECT * FROM events e WHERE e.decider_id = v_decider_id
      UNION ALL
      SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id) s
ORDER BY s."offset";
$function$;

-- get_events(v_decider_id text, v_decider text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_events(v_decider_id text, v_decider text)
 RETURNS SETOF events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM (SELECT * FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider
      UNION ALL
      SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id AND a.decider = v_decider) s
ORDER BY s."offset";
$function$;

-- get_events(v_decider_id text, v_decider text, v_after_offset bigint, v_limit integer): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_events(v_decider_id text, v_decider text, v_after_offset bigint, v_limit integer)
 RETURNS SETOF events
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- get_last_event(v_decider_id text, v_decider text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_last_event(v_decider_id text, v_decider text)
 RETURNS SETOF events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM ((SELECT * FROM events e WHERE e.decider_id = v_decider_id AND e.decider = v_decider
       ORDER BY e."offset" DESC LIMIT 1)
      UNION ALL
      (SELECT * FROM archived_events a WHERE a.decider_id = v_decider_id AND a.decider = v_decider
       ORDER BY a."offset" DESC LIMIT 1)) s
ORDER BY s."offset" DESC
LIMIT 1;
$function$;

-- get_snapshot(v_decider text, v_decider_id text, v_version text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.get_snapshot(v_decider text, v_decider_id text, v_version text)
 RETURNS SETOF snapshots
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM snapshots s
WHERE s.decider = v_decider
  AND s.decider_id = v_decider_id
  AND s.version = v_version;
$function$;

-- lease_events(v_view text, v_streams integer, v_events_per_stream integer, v_lock_seconds integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.lease_events(v_view text, v_streams integer DEFAULT 10, v_events_per_stream integer DEFAULT 100, v_lock_seconds integer DEFAULT 300)
 RETURNS TABLE(lease_id uuid, attempts integer, event text, event_id uuid, event_version bigint, decider text, decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean, created_at timestamp with time zone, "offset" bigint, transaction_id xid8, metadata jsonb)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'force_custom_plan'
AS $function$
BEGIN
    RETURN QUERY SELECT *
                 FROM lease_events(v_view, v_streams, v_events_per_stream, v_lock_seconds,
                                   least(greatest(1000, v_streams::bigint * v_events_per_stream), 20000)::int);
END;
$function$;

-- lease_events(v_view text, v_streams integer, v_events_per_stream integer, v_lock_seconds integer, v_advance_events integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.lease_events(v_view text, v_streams integer, v_events_per_stream integer, v_lock_seconds integer, v_advance_events integer)
 RETURNS TABLE(lease_id uuid, attempts integer, event text, event_id uuid, event_version bigint, decider text, decider_id text, data jsonb, command_id uuid, previous_id uuid, final boolean, created_at timestamp with time zone, "offset" bigint, transaction_id xid8, metadata jsonb)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'force_custom_plan'
AS $function$
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
$function$;

-- list_parked_events(v_view text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.list_parked_events(v_view text DEFAULT NULL::text)
 RETURNS SETOF parked_events
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM parked_events p
WHERE v_view IS NULL
   OR p.view = v_view
ORDER BY p.parked_at, p."offset";
$function$;

-- log_head(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.log_head()
 RETURNS TABLE(transaction_id xid8, "offset" bigint)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
#variable_conflict use_column
DECLARE
    v_horizon xid8 := log_horizon();
BEGIN
    RETURN QUERY SELECT e.transaction_id, e."offset"
                 FROM events e
                 WHERE e.transaction_id < v_horizon
                 ORDER BY e.transaction_id DESC, e."offset" DESC
                 LIMIT 1;
END;
$function$;

-- log_horizon(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.log_horizon()
 RETURNS xid8
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'auto'
AS $function$
DECLARE
    v_xmax    xid8 := pg_snapshot_xmax(pg_current_snapshot());
    v_xmax_lo bigint;
    v_behind  bigint;
    v_horizon xid8;
    v_oldest  xid8;
BEGIN
    -- The backends' transaction ids as they are now, not the copy this transaction read earlier.
    PERFORM pg_stat_clear_snapshot();
    v_xmax_lo := (v_xmax::text::numeric % 4294967296)::bigint;
    -- How far below xmax the oldest running transaction of this database is, in 32-bit xid arithmetic (xids of
    -- running transactions are less than 2^31 behind xmax). A transaction that took its id after the snapshot
    -- (at or past xmax: 0, or 2^31 and more, behind it) cannot have appended anything below xmax: not counted.
    SELECT max(r.behind)
    INTO v_behind
    FROM (SELECT (v_xmax_lo - x.xid + 4294967296) % 4294967296 AS behind
          FROM (SELECT a.backend_xid::text::bigint AS xid
                FROM pg_stat_get_activity(NULL) a
                WHERE a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                  AND a.backend_xid IS NOT NULL
                  -- An automatic ANALYZE takes a transaction id, and never appends.
                  AND a.backend_type IS DISTINCT FROM 'autovacuum worker'
                UNION ALL
                SELECT p.transaction::text::bigint
                FROM pg_prepared_xacts p
                WHERE p.database = current_database()) x) r
    WHERE r.behind BETWEEN 1 AND 2147483647;
    v_horizon := (v_xmax::text::numeric - coalesce(v_behind, 0))::text::xid8;
    -- Under REPEATABLE READ or SERIALIZABLE the transaction keeps one snapshot: a transaction it saw running stays
    -- invisible to it after it ends, so its events must not be passed either. Of the transactions the snapshot saw
    -- running, only those still running in another database (or an automatic ANALYZE) cannot have appended here.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- (ORDER BY ... LIMIT 1: PostgreSQL 14 and 15 have no min() for xid8.)
        SELECT x.xid
        INTO v_oldest
        FROM pg_snapshot_xip(pg_current_snapshot()) AS x(xid)
        WHERE (x.xid::text::numeric % 4294967296)::bigint NOT IN (
            SELECT a.backend_xid::text::bigint
            FROM pg_stat_get_activity(NULL) a
            WHERE a.backend_xid IS NOT NULL
              AND (a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                OR a.backend_type = 'autovacuum worker')
            UNION ALL
            SELECT p.transaction::text::bigint
            FROM pg_prepared_xacts p
            WHERE p.database <> current_database())
        ORDER BY x.xid
        LIMIT 1;
        IF v_oldest < v_horizon THEN
            v_horizon := v_oldest;
        END IF;
    END IF;
    RETURN v_horizon;
END;
$function$;

-- missing_history(v_view text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.missing_history(v_view text)
 RETURNS TABLE(archived_streams bigint, archived_events bigint, removed_streams bigint, removed_events bigint)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- move_streams_to_archive(v_deciders text[], v_decider_ids text[]): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.move_streams_to_archive(v_deciders text[], v_decider_ids text[])
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- nack_event(v_view text, v_decider_id text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.nack_event(v_view text, v_decider_id text)
 RETURNS SETOF locks
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY UPDATE locks l
        SET locked_until = now(),
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$function$;

-- notify_events_appended(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.notify_events_appended()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    PERFORM pg_notify('fstore_events', '');
    RETURN NULL;
END;
$function$;

-- on_insert_or_update_on_views(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.on_insert_or_update_on_views()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    PERFORM reset_view_positions(NEW.view, NEW.start_at);
    PERFORM warn_missing_history(NEW.view);
    RETURN NULL;
END;
$function$;

-- raise_beyond_lease(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.raise_beyond_lease(v_view text, v_decider_id text, v_lease_id uuid, v_offset bigint)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_leased_to bigint;
BEGIN
    SELECT l.leased_to INTO v_leased_to
    FROM locks l
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    IF v_offset > v_leased_to THEN
        RAISE EXCEPTION 'offset % of stream % is past the last event lease % delivered (%)', v_offset, v_decider_id,
            v_lease_id, v_leased_to
            USING ERRCODE = 'invalid_parameter_value', CONSTRAINT = 'locks_within_lease',
                  HINT = 'Acknowledge the last event you handled: the ones after it have not been delivered.';
    END IF;
END;
$function$;

-- raise_lease_lost(v_view text, v_decider_id text, v_lease_id uuid): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.raise_lease_lost(v_view text, v_decider_id text, v_lease_id uuid)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RAISE EXCEPTION 'the lease % on stream % of view % is no longer held', v_lease_id, v_decider_id, v_view
        USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held',
              HINT = 'It expired and another consumer took the stream, or the view was reset. Renew long leases.';
END;
$function$;

-- read_into_lock_rows(v_view text, v_from_xid xid8, v_from bigint, v_to_xid xid8, v_to bigint, v_skip text[], v_handled jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.read_into_lock_rows(v_view text, v_from_xid xid8, v_from bigint, v_to_xid xid8, v_to bigint, v_skip text[] DEFAULT '{}'::text[], v_handled jsonb DEFAULT '{}'::jsonb)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'force_custom_plan'
 SET enable_seqscan TO 'off'
AS $function$
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
$function$;

-- register_decider_event(v_decider text, v_event text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.register_decider_event(v_decider text, v_event text)
 RETURNS SETOF deciders
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT *
FROM register_decider_event(v_decider, v_event, NULL::text, 1::bigint);
$function$;

-- register_decider_event(v_decider text, v_event text, v_description text, v_event_version bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.register_decider_event(v_decider text, v_event text, v_description text, v_event_version bigint DEFAULT 1)
 RETURNS SETOF deciders
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- register_view(v_view text, v_pooling_delay bigint, v_start_at timestamp without time zone): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.register_view(v_view text, v_pooling_delay bigint, v_start_at timestamp without time zone)
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY INSERT INTO views AS v (view, start_at, pooling_delay_s, pooling_delay_ms)
        VALUES (v_view, v_start_at, (v_pooling_delay + 999) / 1000, v_pooling_delay)
        ON CONFLICT (view) DO UPDATE
            SET start_at         = EXCLUDED.start_at,
                pooling_delay_s  = EXCLUDED.pooling_delay_s,
                pooling_delay_ms = EXCLUDED.pooling_delay_ms
        RETURNING v.*;
END;
$function$;

-- register_view(v_view text, v_pooling_delay bigint, v_start_at timestamp without time zone, v_deciders text[], v_event_types text[]): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.register_view(v_view text, v_pooling_delay bigint, v_start_at timestamp without time zone, v_deciders text[], v_event_types text[] DEFAULT NULL::text[])
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_deciders_list text[] := subscription_list('register_view', 'deciders', v_deciders);
    v_events_list   text[] := subscription_list('register_view', 'event types', v_event_types);
BEGIN
    RETURN QUERY INSERT INTO views AS v (view, start_at, pooling_delay_s, pooling_delay_ms, subscribed_deciders,
                                         subscribed_events)
        VALUES (v_view, v_start_at, (v_pooling_delay + 999) / 1000, v_pooling_delay,
                v_deciders_list, v_events_list)
        ON CONFLICT (view) DO UPDATE
            SET start_at            = EXCLUDED.start_at,
                pooling_delay_s     = EXCLUDED.pooling_delay_s,
                pooling_delay_ms    = EXCLUDED.pooling_delay_ms,
                subscribed_deciders = EXCLUDED.subscribed_deciders,
                subscribed_events   = EXCLUDED.subscribed_events
        RETURNING v.*;
END;
$function$;

-- register_view(v_view text, v_start_at timestamp without time zone, v_lock_timeout_s bigint, v_pooling_delay_s bigint, v_edge_function_url text): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.register_view(v_view text, v_start_at timestamp without time zone DEFAULT now(), v_lock_timeout_s bigint DEFAULT 300, v_pooling_delay_s bigint DEFAULT NULL::bigint, v_edge_function_url text DEFAULT NULL::text)
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY INSERT INTO views AS v (view, start_at, lock_timeout_s, pooling_delay_s, pooling_delay_ms,
                                         edge_function_url)
        VALUES (v_view, v_start_at, v_lock_timeout_s, v_pooling_delay_s, v_pooling_delay_s * 1000, v_edge_function_url)
        ON CONFLICT (view) DO UPDATE
            SET start_at          = EXCLUDED.start_at,
                lock_timeout_s    = EXCLUDED.lock_timeout_s,
                pooling_delay_s   = EXCLUDED.pooling_delay_s,
                pooling_delay_ms  = EXCLUDED.pooling_delay_ms,
                edge_function_url = EXCLUDED.edge_function_url
        RETURNING v.*;
END;
$function$;

-- release_lease(v_view text, v_decider_id text, v_lease_id uuid, v_delay_ms bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.release_lease(v_view text, v_decider_id text, v_lease_id uuid, v_delay_ms bigint DEFAULT 0)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF v_delay_ms IS NULL OR v_delay_ms < 0 THEN
        RAISE EXCEPTION 'release_lease: delay must be zero or more milliseconds, got %', v_delay_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET locked_until = now() + v_delay_ms * interval '1 millisecond',
        lease_id     = NULL,
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    RETURN FOUND;
END;
$function$;

-- remove_archived_streams(v_older_than interval, v_max_streams integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.remove_archived_streams(v_older_than interval, v_max_streams integer DEFAULT 1000)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- renew_lease(v_view text, v_decider_id text, v_lease_id uuid, v_lock_seconds integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.renew_lease(v_view text, v_decider_id text, v_lease_id uuid, v_lock_seconds integer)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF v_lock_seconds IS NULL OR v_lock_seconds < 1 THEN
        RAISE EXCEPTION 'renew_lease: lock seconds must be one or more, got %', v_lock_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET locked_until = now() + make_interval(secs => v_lock_seconds),
        updated_at   = now()
    WHERE l.view = v_view
      AND l.decider_id = v_decider_id
      AND l.lease_id = v_lease_id;
    RETURN FOUND;
END;
$function$;

-- reset_view(v_view text, v_start_at timestamp without time zone): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.reset_view(v_view text, v_start_at timestamp without time zone)
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- reset_view(v_view text, v_start_at timestamp without time zone, v_deciders text[], v_event_types text[]): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.reset_view(v_view text, v_start_at timestamp without time zone, v_deciders text[], v_event_types text[])
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- reset_view_positions(v_view text, v_start_at timestamp without time zone): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.reset_view_positions(v_view text, v_start_at timestamp without time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_floor xid8 := '0'::xid8;
BEGIN
    -- A view that starts now (or later) reads nothing of the transactions that ended before it was registered:
    -- its frontier starts at the oldest transaction still running. One that starts in the past reads the whole
    -- log, and skips the events created before start_at.
    IF v_start_at >= localtimestamp THEN
        v_floor := log_horizon();
    END IF;
    -- Waits for a consumer that is advancing the view to commit; its lock rows are then deleted below.
    INSERT INTO view_frontiers AS f (view, transaction_id, "offset", floor_transaction_id, updated_at)
    VALUES (v_view, v_floor, 0, v_floor, now())
    ON CONFLICT (view) DO UPDATE
        SET transaction_id       = EXCLUDED.transaction_id,
            "offset"             = 0,
            floor_transaction_id = EXCLUDED.floor_transaction_id,
            updated_at           = now();
    -- Leases held on the old rows are lost: their holders' acknowledgements fail (locks_lease_held).
    DELETE FROM locks l WHERE l.view = v_view;
    DELETE FROM parked_events p WHERE p.view = v_view;
END;
$function$;

-- retry_parked_event(v_view text, v_offset bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.retry_parked_event(v_view text, v_offset bigint)
 RETURNS SETOF parked_events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_parked parked_events;
BEGIN
    SELECT * INTO v_parked FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no event is parked at offset % for view %', v_offset, v_view USING ERRCODE = 'no_data_found';
    END IF;
    IF v_parked.stream_stopped THEN
        DELETE FROM parked_events p WHERE p.view = v_view AND p."offset" = v_offset;
        UPDATE locks l
        SET locked_until = now(),
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_parked.decider_id;
        RETURN NEXT v_parked;
        RETURN;
    END IF;
    RETURN QUERY UPDATE parked_events p
        SET retry_requested_at = now()
        WHERE p.view = v_view
          AND p."offset" = v_offset
        RETURNING p.*;
END;
$function$;

-- rotate_subject_key(v_subject text, v_key_id uuid, v_key bytea): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.rotate_subject_key(v_subject text, v_key_id uuid, v_key bytea)
 RETURNS uuid
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'rotate_subject_key: the subject must be a name, got %',
            coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- created_at is the transaction's start: a key made earlier in the same transaction must still come first.
    INSERT INTO subject_keys (key_id, subject, key, first, created_at)
    VALUES (v_key_id, v_subject, v_key, false,
            greatest(now(), (SELECT max(k.created_at) + interval '1 microsecond'
                             FROM subject_keys k
                             WHERE k.subject = v_subject)));
    RETURN v_key_id;
END;
$function$;

-- save_snapshot(v_decider text, v_decider_id text, v_version text, v_offset bigint, v_state jsonb): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.save_snapshot(v_decider text, v_decider_id text, v_version text, v_offset bigint, v_state jsonb)
 RETURNS SETOF snapshots
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- schedule_nack_event(v_view text, v_decider_id text, v_milliseconds bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.schedule_nack_event(v_view text, v_decider_id text, v_milliseconds bigint)
 RETURNS SETOF locks
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF v_milliseconds IS NULL OR v_milliseconds < 0 THEN
        RAISE EXCEPTION 'schedule_nack_event: milliseconds must be zero or more, got %', v_milliseconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY UPDATE locks l
        SET locked_until = now() + v_milliseconds * interval '1 millisecond',
            updated_at   = now()
        WHERE l.view = v_view
          AND l.decider_id = v_decider_id
        RETURNING l.*;
END;
$function$;

-- set_view_lock_timeout(v_view text, v_lock_timeout_s bigint): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.set_view_lock_timeout(v_view text, v_lock_timeout_s bigint)
 RETURNS SETOF views
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY UPDATE views v SET lock_timeout_s = v_lock_timeout_s WHERE v.view = v_view RETURNING v.*;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'set_view_lock_timeout: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
END;
$function$;

-- set_wakeups(v_enabled boolean): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.set_wakeups(v_enabled boolean)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF v_enabled IS NULL THEN
        RAISE EXCEPTION 'set_wakeups: enabled must be true or false, got NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_enabled THEN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = 'events'::regclass AND t.tgname = 't_notify_events_appended') THEN
            BEGIN
                CREATE TRIGGER t_notify_events_appended
                    AFTER INSERT
                    ON events
                    FOR EACH STATEMENT
                EXECUTE FUNCTION notify_events_appended();
            EXCEPTION
                -- Another session created it meanwhile (it committed while this one waited for the table's lock).
                WHEN duplicate_object THEN NULL;
            END;
        END IF;
    ELSE
        DROP TRIGGER IF EXISTS t_notify_events_appended ON events;
    END IF;
    RETURN v_enabled;
END;
$function$;

-- stream_events(v_view_name text, v_limit integer, v_seconds integer): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.stream_events(v_view_name text, v_limit integer DEFAULT 1, v_seconds integer DEFAULT 300)
 RETURNS SETOF events
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET plan_cache_mode TO 'force_custom_plan'
AS $function$
DECLARE
    v_view_row views;
BEGIN
    IF v_limit IS NULL OR v_limit < 0 THEN
        RAISE EXCEPTION 'stream_events: limit must be zero or more, got %', v_limit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_seconds IS NULL OR v_seconds < 1 THEN
        RAISE EXCEPTION 'stream_events: lock seconds must be one or more, got %', v_seconds
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view_name;
    -- fstore-sql answers nothing for a view that does not exist.
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM advance_view(v_view_name, least(greatest(1000, v_limit::bigint * 100), 20000)::int);
    RETURN QUERY
        WITH candidates AS (SELECT l.view, l.decider_id
                            FROM locks l
                            WHERE l.view = v_view_name
                              AND l.last_offset < l."offset"
                              AND l.locked_until <= now()
                            ORDER BY l.locked_until, l."offset"
                            LIMIT v_limit FOR UPDATE SKIP LOCKED),
             leased AS (UPDATE locks l
                 SET locked_until = now() + make_interval(secs => v_seconds),
                     updated_at = now()
                 FROM candidates c
                 WHERE l.view = c.view
                   AND l.decider_id = c.decider_id
                 RETURNING l.decider_id, l.last_offset)
        SELECT e.*
        FROM leased
                 CROSS JOIN LATERAL (SELECT *
                                     FROM events ev
                                     WHERE ev.decider_id = leased.decider_id
                                       AND ev."offset" > leased.last_offset
                                       AND (v_view_row.subscribed_deciders IS NULL
                                         OR ev.decider = ANY (v_view_row.subscribed_deciders))
                                       AND (v_view_row.subscribed_events IS NULL
                                         OR ev.event = ANY (v_view_row.subscribed_events))
                                     ORDER BY ev."offset"
                                     LIMIT 1) e
        ORDER BY e."offset";
END;
$function$;

-- subject_key(v_subject text, v_key_id uuid, v_candidate bytea): EXECUTE by its owner only, unless granted
CREATE OR REPLACE FUNCTION public.subject_key(v_subject text, v_key_id uuid, v_candidate bytea)
 RETURNS TABLE(key_id uuid, key bytea)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
#variable_conflict use_column
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'subject_key: the subject must be a name, got %', coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT k.key_id, k.key
                 FROM subject_keys k
                 WHERE k.subject = v_subject
                 ORDER BY k.created_at DESC, k.key_id
                 LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    -- The first key: a writer racing for it waits on subject_keys_first_key, then stores nothing and reads the
    -- other's (a statement of its own, so it sees that commit).
    INSERT INTO subject_keys (key_id, subject, key)
    VALUES (v_key_id, v_subject, v_candidate)
    ON CONFLICT (subject) WHERE first DO NOTHING;
    RETURN QUERY SELECT k.key_id, k.key
                 FROM subject_keys k
                 WHERE k.subject = v_subject
                 ORDER BY k.created_at DESC, k.key_id
                 LIMIT 1;
END;
$function$;

-- subject_keys(v_key_ids uuid[]): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.subject_keys(v_key_ids uuid[])
 RETURNS TABLE(key_id uuid, key bytea, forgotten boolean)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT k.key_id, k.key, false
FROM subject_keys k
WHERE k.key_id = ANY (v_key_ids)
UNION ALL
SELECT DISTINCT ids.key_id, NULL::bytea, true
FROM unnest(v_key_ids) AS ids(key_id)
         JOIN subject_erasures e ON ids.key_id = ANY (e.key_ids)
WHERE NOT EXISTS (SELECT 1 FROM subject_keys k WHERE k.key_id = ids.key_id);
$function$;

-- subscription_list(v_function text, v_what text, v_list text[]): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.subscription_list(v_function text, v_what text, v_list text[])
 RETURNS text[]
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(v_list) = 0 OR array_position(v_list, NULL) IS NOT NULL THEN
        RAISE EXCEPTION '%: % must be NULL (every one) or a list of names without NULL, got %', v_function, v_what,
            v_list
            USING ERRCODE = 'invalid_parameter_value', CONSTRAINT = 'views_subscription';
    END IF;
    RETURN (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(v_list) x);
END;
$function$;

-- view_holding_stream(v_decider text, v_decider_id text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.view_holding_stream(v_decider text, v_decider_id text)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;

-- view_lag(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.view_lag()
 RETURNS TABLE(view text, pending_streams bigint, leased_streams bigint, stopped_streams bigint, events_behind bigint, oldest_unacked_at timestamp with time zone, parked_events bigint, subscribed_deciders text[], subscribed_events text[])
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
 SET random_page_cost TO '1.1'
AS $function$
SELECT v.view,
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
       v.subscribed_events
FROM views v
         LEFT JOIN view_frontiers vf ON vf.view = v.view
         -- The lock rows with unread events only (locks_pending_idx).
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
ORDER BY v.view;
$function$;

-- view_reached(v_view text, v_decider_id text, v_offset bigint): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.view_reached(v_view text, v_decider_id text, v_offset bigint)
 RETURNS TABLE(state text, parked_offset bigint, parked_error text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_view_row views;
    v_event    events;
    v_frontier view_frontiers;
    v_lock     locks;
    v_parked   parked_events;
BEGIN
    IF v_decider_id IS NULL OR v_offset IS NULL THEN
        RAISE EXCEPTION 'view_reached: the stream and the offset must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v_view_row FROM views v WHERE v.view = v_view;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'view_reached: there is no view %', v_view USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO v_event FROM events e WHERE e."offset" = v_offset AND e.decider_id = v_decider_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'view_reached: stream % has no event at offset %', v_decider_id, v_offset
            USING ERRCODE = 'no_data_found', CONSTRAINT = 'events_pkey';
    END IF;
    IF v_view_row.subscribed_deciders IS NOT NULL AND NOT (v_event.decider = ANY (v_view_row.subscribed_deciders)) THEN
        RAISE EXCEPTION 'view_reached: view % does not subscribe to decider % (stream %)', v_view, v_event.decider,
            v_decider_id
            USING ERRCODE = 'invalid_parameter_value', CONSTRAINT = 'views_subscription';
    END IF;
    -- The event itself parked, or an earlier one that stopped the stream: nothing will reach it until an operator
    -- retries or discards (a parked event the stream went on past does not hold later ones).
    SELECT *
    INTO v_parked
    FROM parked_events p
    WHERE p.view = v_view
      AND p.decider_id = v_decider_id
      AND p."offset" <= v_offset
      AND (p."offset" = v_offset OR p.stream_stopped)
    ORDER BY p."offset"
    LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT 'parked'::text, v_parked."offset", v_parked.error;
        RETURN;
    END IF;
    -- Past the frontier, no consumer has read it yet. (No frontier row: YugabyteDB's profile, whose frontier stands
    -- past every transaction.)
    SELECT * INTO v_frontier FROM view_frontiers f WHERE f.view = v_view;
    IF FOUND AND (v_event.transaction_id, v_event."offset") > (v_frontier.transaction_id, v_frontier."offset") THEN
        RETURN QUERY SELECT 'pending'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- Read by a consumer: handled unless the stream's lock row has events it projects still to handle, up to this
    -- one. (No lock row: a log batch took the stream whole, so everything up to the frontier is handled.)
    SELECT * INTO v_lock FROM locks l WHERE l.view = v_view AND l.decider_id = v_decider_id;
    IF FOUND AND EXISTS (SELECT 1
                         FROM events e
                         WHERE e.decider_id = v_decider_id
                           AND e."offset" > v_lock.last_offset
                           AND e."offset" <= v_offset
                           AND e.created_at >= v_view_row.start_at
                           AND (v_view_row.subscribed_deciders IS NULL
                             OR e.decider = ANY (v_view_row.subscribed_deciders))
                           AND (v_view_row.subscribed_events IS NULL
                             OR e.event = ANY (v_view_row.subscribed_events))) THEN
        RETURN QUERY SELECT 'pending'::text, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'handled'::text, NULL::bigint, NULL::text;
END;
$function$;

-- view_status(): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.view_status()
 RETURNS TABLE(view text, streams bigint, pending_streams bigint, leased_streams bigint, stopped_streams bigint, events_behind bigint, oldest_unacked_at timestamp with time zone, parked_events bigint, subscribed_deciders text[], subscribed_events text[], archived_streams bigint, archived_events bigint)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
SELECT l.view,
       (SELECT count(*) FROM locks k WHERE k.view = l.view),
       l.pending_streams,
       l.leased_streams,
       l.stopped_streams,
       l.events_behind,
       l.oldest_unacked_at,
       l.parked_events,
       l.subscribed_deciders,
       l.subscribed_events,
       coalesce(a.streams, 0),
       coalesce(a.events, 0)
FROM view_lag() l
         JOIN views v ON v.view = l.view
         -- Left the log: the archived streams (removed since, or not) that the view reads, closed from start_at on.
         LEFT JOIN LATERAL (SELECT count(*) AS streams, sum(ar.events)::bigint AS events
                            FROM archived_streams ar
                            WHERE (v.subscribed_deciders IS NULL OR ar.decider = ANY (v.subscribed_deciders))
                              AND ar.closed_at >= v.start_at) a ON true
ORDER BY l.view;
$function$;

-- wait_for_view(v_view text, v_decider_id text, v_offset bigint, v_timeout_ms integer): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.wait_for_view(v_view text, v_decider_id text, v_offset bigint, v_timeout_ms integer DEFAULT 10000)
 RETURNS TABLE(state text, parked_offset bigint, parked_error text)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
DECLARE
    v_until   timestamptz;
    v_reached record;
    v_pause   float8 := 0.002;
BEGIN
    IF v_timeout_ms IS NULL OR v_timeout_ms < 0 THEN
        RAISE EXCEPTION 'wait_for_view: the timeout must be zero or more milliseconds, got %', v_timeout_ms
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'wait_for_view: call it under READ COMMITTED: under % its snapshot never sees the view move',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    v_until := clock_timestamp() + make_interval(secs => v_timeout_ms / 1000.0);
    LOOP
        SELECT * INTO v_reached FROM view_reached(v_view, v_decider_id, v_offset);
        IF v_reached.state <> 'pending' OR clock_timestamp() >= v_until THEN
            RETURN QUERY SELECT v_reached.state, v_reached.parked_offset, v_reached.parked_error;
            RETURN;
        END IF;
        -- From 2 ms, doubling up to 50 ms: quick for a worker that is right behind, light for one that is not.
        PERFORM pg_sleep(least(v_pause, greatest(extract(epoch FROM v_until - clock_timestamp()), 0)));
        v_pause := least(v_pause * 2, 0.05);
    END LOOP;
END;
$function$;

-- warn_missing_history(v_view text): EXECUTE by everyone (PUBLIC)
CREATE OR REPLACE FUNCTION public.warn_missing_history(v_view text)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'public', 'pg_temp'
AS $function$
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
$function$;
