-- Custom SQL migration: security lives in the migrations, not in an optional script run after them.
--
-- Every function of the SQL API now runs with a fixed search_path (pg_catalog, public, pg_temp: pg_temp last, or
-- PostgreSQL would search it first), so that objects a caller puts first on its own search_path (a schema of its
-- own, a temporary table named events, a function named now() or an operator ->>) never stand in for fstore's
-- tables, functions or operators. The functions that write run with the rights of their owner (SECURITY DEFINER):
-- an application role needs no write privilege on any table, and every event still passes the append trigger.
-- The read functions and the trigger functions stay SECURITY INVOKER. packages/schema/sql/least-privilege.sql
-- used to set both with ALTER FUNCTION, so a migration that replaced a function (CREATE OR REPLACE resets them,
-- keeping the grants) silently took them away until the script ran again; from here on, a migration that creates
-- or replaces a function declares both in its definition (pnpm check:migrations refuses one that does not), and
-- the script only creates roles and grants privileges.
--
-- The functions below keep their bodies (they are in the migrations that created them; packages/schema/sql/schema.sql
-- shows every function's current definition in one place): ALTER FUNCTION changes exactly these two attributes,
-- where re-creating thirty functions would copy a thousand unchanged lines and hide what changed.
--
-- A SECURITY DEFINER function must not be callable by everyone: PostgreSQL grants EXECUTE to PUBLIC on every new
-- function, so EXECUTE on the writing functions is revoked from PUBLIC here. Their owner (the role that runs the
-- migrations) and superusers call them as before; other roles need EXECUTE granted (least-privilege.sql grants it
-- to the application role). The read functions stay executable by PUBLIC: as SECURITY INVOKER they read only what
-- the caller may read anyway.
--
-- fstore-sql's rules that turn UPDATE and DELETE of events and deciders into silent no-ops now apply only to roles
-- that hold UPDATE (or DELETE) on the table; for everyone else the statement fails with "permission denied" (42501)
-- instead of answering UPDATE 0 (rules are applied before privileges are checked). The owner keeps the no-op.
-- One statement per chunk, as in the other migrations.

-- The read functions: SECURITY INVOKER (SELECT is all they need), fixed search_path. SQL functions with a SET
-- clause are no longer inlined into the caller's query; each call plans on its own (microseconds).
ALTER FUNCTION get_events(text) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION get_events(text, text) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION get_last_event(text, text) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION list_parked_events(text) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION view_status() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
-- The functions that write: SECURITY DEFINER, fixed search_path.
ALTER FUNCTION register_decider_event(text, text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION register_decider_event(text, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint, boolean) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION append_events(text, text, uuid, uuid, jsonb) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION register_view(text, timestamp, bigint, bigint, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION register_view(text, bigint, timestamp) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION stream_events(text, int, int) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION ack_event(text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION nack_event(text, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION schedule_nack_event(text, text, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION lease_events(text, int, int, int) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION ack_events(text, text, uuid, bigint, boolean) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION renew_lease(text, text, uuid, int) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION release_lease(text, text, uuid, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION fail_event(text, text, uuid, bigint, text, bigint, int, boolean) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION retry_parked_event(text, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION discard_parked_event(text, bigint) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION reset_view(text, timestamp) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION set_wakeups(boolean) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION ack_leases(text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
-- Trigger functions and helpers: SECURITY INVOKER, fixed search_path. Nobody calls them directly; fired by the
-- functions above, they run as the owner.
ALTER FUNCTION forbid_truncate() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION check_event_append() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION before_update_views_table() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION on_insert_on_events() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION reset_view_positions(text, timestamp) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION on_insert_or_update_on_views() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION raise_lease_lost(text, text, uuid) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION notify_events_appended() SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
ALTER FUNCTION raise_beyond_lease(text, text, uuid, bigint) SET search_path = pg_catalog, public, pg_temp;
--> statement-breakpoint
-- Nobody may run the owner's rights by default (see above). A role that called these functions with write
-- privileges of its own needs EXECUTE granted now, to it or to a role it is a member of.
REVOKE EXECUTE ON FUNCTION
    register_decider_event(text, text, text, bigint),
    register_decider_event(text, text),
    append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint),
    append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint, boolean),
    append_events(text, text, uuid, uuid, jsonb),
    register_view(text, timestamp, bigint, bigint, text),
    register_view(text, bigint, timestamp),
    stream_events(text, int, int),
    ack_event(text, text, bigint),
    nack_event(text, text),
    schedule_nack_event(text, text, bigint),
    lease_events(text, int, int, int),
    ack_events(text, text, uuid, bigint, boolean),
    renew_lease(text, text, uuid, int),
    release_lease(text, text, uuid, bigint),
    fail_event(text, text, uuid, bigint, text, bigint, int, boolean),
    retry_parked_event(text, bigint),
    discard_parked_event(text, bigint),
    reset_view(text, timestamp),
    set_wakeups(boolean),
    ack_leases(text, jsonb)
    FROM PUBLIC;
--> statement-breakpoint
-- A forbidden UPDATE or DELETE of the log fails loudly (42501) instead of answering UPDATE 0.
CREATE OR REPLACE RULE ignore_update_events AS ON UPDATE TO events
    WHERE has_table_privilege('public.events'::regclass, 'UPDATE') DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_delete_events AS ON DELETE TO events
    WHERE has_table_privilege('public.events'::regclass, 'DELETE') DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_update_decider_events AS ON UPDATE TO deciders
    WHERE has_table_privilege('public.deciders'::regclass, 'UPDATE') DO INSTEAD NOTHING;
--> statement-breakpoint
CREATE OR REPLACE RULE ignore_delete_decider_events AS ON DELETE TO deciders
    WHERE has_table_privilege('public.deciders'::regclass, 'DELETE') DO INSTEAD NOTHING;
