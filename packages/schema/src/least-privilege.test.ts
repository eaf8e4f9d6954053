/**
 * Least privilege: the security the migrations declare, and the optional script (sql/least-privilege.sql) that
 * creates the roles, as those roles see the database: an application role that writes only through the SQL API, a
 * read-only role for reporting, and SECURITY DEFINER functions that a caller's search_path cannot hijack. Every
 * forbidden operation is tried, as a login user in each role, and must fail with 42501 and change nothing. An
 * upgrade keeps the application role working without the script running again: from a database at migration 0006
 * with the script of then, through the later migrations and a synthetic one that replaces functions with their
 * current definitions.
 *
 * Roles are cluster-wide and test files run in parallel on one server: this file applies the script with role
 * names of its own (the fstore.app_role and fstore.reader_role settings) and drops them at the end.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { createTestDatabase, type TestDatabase, withDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate as drizzleMigrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { migrate, migrationsFolder, migrationsSchema, migrationsTable } from './migrate.js';
import { tableContents } from './test-support/refusals.js';
import { failureOf } from './test-support/sql-client.js';

const script = readFileSync(new URL('../sql/least-privilege.sql', import.meta.url), 'utf8');

/** The script's lists of the SQL API (v_read, v_write, v_internal): the one place that says which function is which. */
function apiList(name: 'v_read' | 'v_write' | 'v_internal'): string[] {
  const match = new RegExp(`\\b${name}\\s+CONSTANT\\s+text\\[\\]\\s*:=\\s*ARRAY\\s*\\[([^\\]]*)\\]`).exec(
    script,
  );
  if (!match?.[1]) throw new Error(`sql/least-privilege.sql has no list ${name}`);
  return [...match[1].matchAll(/'([^']+)'/g)].map((m) => m[1] as string);
}
const lists = { read: apiList('v_read'), write: apiList('v_write'), internal: apiList('v_internal') };
const pinned = 'search_path=pg_catalog, public, pg_temp';

/**
 * What the migrations declare for every function in schema public: SECURITY DEFINER exactly for those that write,
 * the fixed search_path for all, EXECUTE by PUBLIC for none of those that write. Empty when all is as it should be.
 */
const securityProblemsQuery = `
  SELECT p.oid::regprocedure::text AS name, p.prosecdef AS definer, p.proconfig AS config,
         has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute,
         CASE WHEN p.proname = ANY ($1::text[]) THEN 'write'
              WHEN p.proname = ANY ($2::text[]) THEN 'read'
              WHEN p.proname = ANY ($3::text[]) THEN 'internal' END AS kind
  FROM pg_proc p
  WHERE p.pronamespace = 'public'::regnamespace`;
interface FunctionSecurity {
  name: string;
  definer: boolean;
  config: string[] | null;
  public_execute: boolean;
  kind: 'write' | 'read' | 'internal' | null;
}
function securityProblems(rows: FunctionSecurity[]): string[] {
  return rows
    .flatMap((row) => [
      row.kind === null ? `${row.name}: in none of the script's lists` : '',
      row.definer !== (row.kind === 'write')
        ? `${row.name}: SECURITY ${row.definer ? 'DEFINER' : 'INVOKER'}`
        : '',
      (row.config ?? []).includes(pinned) ? '' : `${row.name}: search_path not fixed (${row.config})`,
      row.kind === 'write' && row.public_execute ? `${row.name}: executable by PUBLIC` : '',
    ])
    .filter((problem) => problem !== '')
    .sort();
}
const listParameters = () => [lists.write, lists.read, lists.internal];

const suffix = randomBytes(4).toString('hex');
const password = `pw-${suffix}`;
const names = {
  appRole: `fstore_app_${suffix}`,
  readerRole: `fstore_reader_${suffix}`,
  app: `app_user_${suffix}`,
  reader: `reader_user_${suffix}`,
  owner: `fstore_owner_${suffix}`,
  ownerApp: `owner_app_user_${suffix}`,
};

/** Runs the script in one transaction, with the given role names (or the defaults when none). */
async function applyScript(sql: postgres.Sql, roles?: { app: string; reader: string }) {
  await sql.begin(async (tx) => {
    if (roles) {
      await tx`SELECT set_config('fstore.app_role', ${roles.app}, true), set_config('fstore.reader_role', ${roles.reader}, true)`;
    }
    await tx.unsafe(script);
  });
}

/** What the script decides, read from the catalogue: to compare two runs. */
async function privileges(sql: postgres.Sql) {
  return sql`
    SELECT 'function' AS kind, p.oid::regprocedure::text AS name, p.prosecdef::text AS definer,
           array_to_string(p.proconfig, ';') AS config, coalesce(p.proacl::text, '') AS acl
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
    UNION ALL
    SELECT 'table', c.relname, '', '', coalesce(c.relacl::text, '') FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'S')
    UNION ALL
    SELECT 'column', c.relname || '.' || a.attname, '', '', a.attacl::text
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE c.relnamespace = 'public'::regnamespace AND a.attacl IS NOT NULL
    UNION ALL
    SELECT 'rule', r.rulename, '', '', pg_get_ruledef(r.oid) FROM pg_rewrite r
    WHERE r.ev_class IN ('public.events'::regclass, 'public.deciders'::regclass)
    UNION ALL
    SELECT 'schema', n.nspname, '', '', coalesce(n.nspacl::text, '') FROM pg_namespace n WHERE n.nspname = 'public'
    ORDER BY 1, 2`;
}

const db = await createTestDatabase();
const admin = postgres(withDatabase(db.url, 'postgres'), { max: 1, onnotice: () => {} });
let otherDatabases: TestDatabase[] = [];

/** A login connection as `user`, on `database` (default: this file's). */
function connectAs(user: string, database: TestDatabase = db) {
  return database.connect({ user, pass: password, max: 1 } as postgres.Options<Record<string, never>>);
}

let app: postgres.Sql;
let reader: postgres.Sql;
let decider: string;

beforeAll(async () => {
  await applyScript(db.sql, { app: names.appRole, reader: names.readerRole });
  await db.sql.unsafe(`CREATE ROLE "${names.app}" LOGIN PASSWORD '${password}' IN ROLE "${names.appRole}"`);
  await db.sql.unsafe(
    `CREATE ROLE "${names.reader}" LOGIN PASSWORD '${password}' IN ROLE "${names.readerRole}"`,
  );
  app = connectAs(names.app);
  reader = connectAs(names.reader);
  decider = `decider-${randomUUID()}`;
  await app`SELECT * FROM register_decider_event(${decider}, 'created')`;
  await app`SELECT * FROM register_decider_event(${decider}, 'renamed', 'second event', 1)`;
});

afterAll(async () => {
  await db.drop();
  for (const other of otherDatabases) await other.drop();
  // The roles hold privileges only in the databases dropped above, so they can go now.
  for (const role of [
    names.app,
    names.reader,
    names.ownerApp,
    names.appRole,
    names.readerRole,
    names.owner,
  ]) {
    await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  }
  await admin.end();
});

/** Appends one event as `sql` (the application role), after `previousId`. */
async function appendAs(sql: postgres.Sql, deciderId: string, previousId: string | null, event = 'created') {
  const [row] = await sql<{ event_id: string; offset: string }[]>`
    SELECT * FROM append_event(${event}, ${randomUUID()}, ${decider}, ${deciderId}, '{"n": 1}', ${randomUUID()},
                               ${previousId})`;
  if (!row) throw new Error('append_event returned nothing');
  return row;
}

async function expectDenied(sql: postgres.Sql, statement: string, parameters: unknown[] = []) {
  const before = await tableContents(db.sql);
  const failure = await failureOf(() =>
    sql.unsafe(statement, parameters as postgres.ParameterOrJSON<never>[]),
  );
  expect(failure, statement).toMatchObject({ code: '42501' });
  expect(failure.message, statement).toMatch(/permission denied/);
  expect(await tableContents(db.sql), `nothing written by: ${statement}`).toEqual(before);
  // The session is still usable.
  expect(await sql`SELECT 1 AS ok`).toEqual([{ ok: 1 }]);
}

describe('sql/least-privilege.sql, the script', () => {
  test('is not what makes the functions secure: the migrations alone declare SECURITY DEFINER for those that write, the fixed search_path for all, and no EXECUTE by PUBLIC on those that write', async () => {
    const fresh = await createTestDatabase();
    otherDatabases.push(fresh);
    const rows = await fresh.sql.unsafe<FunctionSecurity[]>(securityProblemsQuery, listParameters());
    expect(rows.length).toBeGreaterThan(40);
    expect(securityProblems(rows)).toEqual([]);
    // The lists name only functions that exist.
    const names = new Set(rows.map((row) => row.name.replace(/\(.*/, '')));
    expect([...lists.read, ...lists.write, ...lists.internal].filter((name) => !names.has(name))).toEqual([]);
  });

  test('the same on PGlite, where SECURITY DEFINER and the fixed search_path work too (one superuser session)', async () => {
    const pg = new PGlite();
    try {
      await migrate(pg);
      const { rows } = await pg.query<FunctionSecurity>(securityProblemsQuery, listParameters());
      expect(securityProblems(rows)).toEqual([]);
      await pg.exec(`SET search_path = pg_temp, public; CREATE TEMP TABLE events (LIKE public.events)`);
      await pg.query(`SELECT * FROM register_decider_event('d', 'e')`);
      await pg.query(
        `SELECT * FROM append_event('e', gen_random_uuid(), 'd', 's', '{}', gen_random_uuid(), NULL)`,
      );
      const { rows: read } = await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM get_events('s')`);
      expect(read).toEqual([{ n: 1 }]);
      expect((await pg.query<{ n: number }>('SELECT count(*)::int AS n FROM events')).rows).toEqual([
        { n: 0 },
      ]);
    } finally {
      await pg.close();
    }
  });

  test('is one statement and idempotent: a second run changes no privilege, setting or rule', async () => {
    expect(script.match(/^DO\b/gm)).toHaveLength(1);
    const before = await privileges(db.sql);
    await applyScript(db.sql, { app: names.appRole, reader: names.readerRole });
    expect(await privileges(db.sql)).toEqual(before);
  });

  test('handles every function fstore installs: PUBLIC may execute none, and each keeps the fixed search_path (a function a migration adds must be added to the script)', async () => {
    const unhandled = await db.sql<{ name: string }[]>`
      SELECT p.oid::regprocedure::text AS name
      FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace
        AND (p.proconfig IS NULL
          OR NOT ('search_path=pg_catalog, public, pg_temp' = ANY (p.proconfig))
          OR has_function_privilege('public', p.oid, 'EXECUTE'))
      ORDER BY 1`;
    expect(unhandled).toEqual([]);
  });

  test('without settings it creates NOLOGIN roles fstore_app and fstore_reader (checked in a transaction rolled back)', async () => {
    const fresh = await createTestDatabase();
    otherDatabases.push(fresh);
    const rolled = new Error('roll back');
    const seen = await fresh.sql
      .begin(async (tx) => {
        await tx.unsafe(script);
        const roles = await tx<{ rolname: string; rolcanlogin: boolean }[]>`
          SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('fstore_app', 'fstore_reader') ORDER BY 1`;
        const [grants] = await tx<{ app: boolean; reader: boolean }[]>`
          SELECT has_function_privilege('fstore_app', 'public.append_events(text,text,uuid,uuid,jsonb)', 'EXECUTE') AS app,
                 has_function_privilege('fstore_reader', 'public.append_events(text,text,uuid,uuid,jsonb)', 'EXECUTE') AS reader`;
        throw Object.assign(rolled, { roles, grants });
      })
      .catch((error: unknown) => error as typeof rolled & { roles: unknown; grants: unknown });
    expect(seen).toBe(rolled);
    expect(seen.roles).toEqual([
      { rolname: 'fstore_app', rolcanlogin: false },
      { rolname: 'fstore_reader', rolcanlogin: false },
    ]);
    expect(seen.grants).toEqual({ app: true, reader: false });
  });

  test('refuses a database without fstore, naming what is missing, and changes nothing', async () => {
    const empty = await createTestDatabase({ from: 'empty' });
    otherDatabases.push(empty);
    const failure = await failureOf(() =>
      applyScript(empty.sql, { app: names.appRole, reader: names.readerRole }),
    );
    expect(failure.code).toBe('P0001');
    expect(failure.message).toMatch(
      /tables \{events,deciders,views,view_frontiers,locks,parked_events,snapshots,subject_keys,subject_erasures,archived_events,archived_streams,retention_runs,out_of_order_events\} are missing.*run fstore's migrations first/,
    );
  });

  test('refuses a superuser, the owner, or the same name for both roles', async () => {
    const before = await privileges(db.sql);
    for (const roles of [
      { app: 'postgres', reader: names.readerRole },
      { app: names.appRole, reader: 'postgres' },
      { app: names.appRole, reader: names.appRole },
    ]) {
      const failure = await failureOf(() => applyScript(db.sql, roles));
      expect(failure.code).toBe('P0001');
      expect(failure.message).toMatch(/superuser or acts as the owner|must differ/);
    }
    expect(await privileges(db.sql)).toEqual(before);
  });

  test('the login users inherit from NOLOGIN roles, and neither role owns or may create anything in public', async () => {
    const roles = await db.sql`
      SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname IN (${names.appRole}, ${names.readerRole}) ORDER BY 1`;
    expect(roles).toEqual([
      { rolname: names.appRole, rolcanlogin: false, rolsuper: false },
      { rolname: names.readerRole, rolcanlogin: false, rolsuper: false },
    ]);
    const [create] = await db.sql`
      SELECT has_schema_privilege(${names.app}, 'public', 'CREATE') AS app,
             has_schema_privilege(${names.reader}, 'public', 'CREATE') AS reader,
             has_schema_privilege('public', 'public', 'CREATE') AS everyone`;
    expect(create).toEqual({ app: false, reader: false, everyone: false });
  });
});

describe('the application role', () => {
  test('registers event types and appends through append_event (8 and 9 arguments) and append_events', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(app, deciderId, null);
    const [second] = await app`
      SELECT * FROM append_event('renamed', ${randomUUID()}, ${decider}, ${deciderId}, '{}', ${randomUUID()},
                                 ${first.event_id}, 1, false)`;
    const batch = await app`
      SELECT * FROM append_events(${decider}, ${deciderId}, ${second?.event_id}, ${randomUUID()},
        ${JSON.stringify([
          { event: 'created', event_id: randomUUID(), data: { a: 1 } },
          { event: 'renamed', event_id: randomUUID(), data: { a: 2 }, final: true },
        ])}::text::jsonb)`;
    expect(batch).toHaveLength(2);
    const stream = await app`SELECT event, final FROM get_events(${deciderId}) ORDER BY "offset"`;
    expect(stream).toEqual([
      { event: 'created', final: false },
      { event: 'renamed', final: false },
      { event: 'created', final: false },
      { event: 'renamed', final: true },
    ]);
    // The checks still run: the stream is closed, for the application role as for anyone.
    const closed = await failureOf(() => appendAs(app, deciderId, batch[1]?.event_id ?? null));
    expect(closed).toMatchObject({ code: '23514', constraint: 'events_stream_not_final' });
  });

  test('keeps snapshots through save_snapshot, get_snapshot and delete_snapshots, and cannot write the table directly', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(app, deciderId, null);
    const [saved] =
      await app`SELECT * FROM save_snapshot(${decider}, ${deciderId}, 'v1', ${first.offset}::bigint, '{"n": 1}')`;
    expect(saved).toMatchObject({ version: 'v1', event_id: first.event_id, state: { n: 1 } });
    expect(await app`SELECT state FROM get_snapshot(${decider}, ${deciderId}, 'v1')`).toEqual([
      { state: { n: 1 } },
    ]);
    await expectDenied(
      app,
      `INSERT INTO snapshots SELECT decider, decider_id, 'v2', "offset", event_id, state FROM snapshots`,
    );
    await expectDenied(app, `UPDATE snapshots SET state = '{}'`);
    await expectDenied(app, 'DELETE FROM snapshots');
    expect(await app`SELECT delete_snapshots(${decider}, 'v1') AS n`).toEqual([{ n: 1 }]);
  });

  test("draws and rotates subjects' keys and reads them, but cannot forget a subject: forget_subject is the owner's", async () => {
    const subject = `subject-${randomUUID()}`;
    const key = `\\x${'ab'.repeat(32)}`;
    const [drawn] =
      await app`SELECT key_id FROM subject_key(${subject}, ${randomUUID()}, ${key}::text::bytea)`;
    const rotated = randomUUID();
    await app`SELECT rotate_subject_key(${subject}, ${rotated}, ${key}::text::bytea)`;
    const ids = `{${drawn?.key_id},${rotated}}`;
    expect(await app`SELECT count(*)::int AS n FROM subject_keys(${ids}::text::uuid[])`).toEqual([{ n: 2 }]);
    await expectDenied(app, `SELECT forget_subject('${subject}')`);
    await expectDenied(reader, `SELECT forget_subject('${subject}')`);
    await expectDenied(app, `DELETE FROM subject_keys WHERE subject = '${subject}'`);
    expect(await reader`SELECT count(*)::int AS n FROM subject_keys(${ids}::text::uuid[])`).toEqual([
      { n: 2 },
    ]);
    await expectDenied(reader, `SELECT * FROM subject_key('${subject}', gen_random_uuid(), '${key}'::bytea)`);
    // The owner can.
    expect(await db.sql`SELECT forget_subject(${subject}) AS n`).toEqual([{ n: 2 }]);
  });

  test("reads what was archived, but cannot archive, remove or delete history: those are the owner's", async () => {
    const deciderId = `stream-${randomUUID()}`;
    await appendAs(app, deciderId, null);
    for (const role of [app, reader]) {
      expect(await role`SELECT * FROM get_archived_stream(${deciderId}, ${decider})`).toEqual([]);
      expect(
        await role`SELECT count(*)::int AS n FROM archived_events WHERE decider_id = ${deciderId}`,
      ).toEqual([{ n: 0 }]);
      await expectDenied(role, `SELECT * FROM archive_stream('${decider}', '${deciderId}')`);
      await expectDenied(role, `SELECT archive_closed_streams(now(), 10)`);
      await expectDenied(role, `SELECT remove_archived_streams(interval '0', 10)`);
      await expectDenied(role, `SELECT move_streams_to_archive(ARRAY['${decider}'], ARRAY['${deciderId}'])`);
      await expectDenied(role, 'DELETE FROM archived_events');
      await expectDenied(role, 'DELETE FROM archived_streams');
    }
    // The archive functions' gate is the owner's alone: set by the application role, it opens nothing.
    await expect(
      app.begin(async (tx) => {
        await tx`SELECT set_config('fstore.moving_history', 'on', true)`;
        await tx`DELETE FROM events WHERE decider_id = ${deciderId}`;
      }),
    ).rejects.toMatchObject({ code: '42501' });
    expect(await app`SELECT count(*)::int AS n FROM events WHERE decider_id = ${deciderId}`).toEqual([
      { n: 1 },
    ]);
  });

  test('reads the log directly and through get_events and get_last_event', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(app, deciderId, null);
    await appendAs(app, deciderId, first.event_id, 'renamed');
    expect(await app`SELECT count(*)::int AS n FROM events WHERE decider_id = ${deciderId}`).toEqual([
      { n: 2 },
    ]);
    expect(await app`SELECT event FROM get_events(${deciderId}, ${decider})`).toHaveLength(2);
    expect(await app`SELECT event FROM get_last_event(${deciderId}, ${decider})`).toEqual([
      { event: 'renamed' },
    ]);
  });

  test('registers a view and works it: lease, acknowledge, renew, release, fail and park, retry, discard, reset, status', async () => {
    const view = `view-${randomUUID()}`;
    await app`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp, 60)`;
    await app`SELECT * FROM register_view(${`${view}-ms`}, 250::bigint, '2000-01-01'::timestamp)`;
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(app, deciderId, null);
    const second = await appendAs(app, deciderId, first.event_id);
    // The lock rows appear when the view advances (lease_events does it too); the log's head and horizon are read.
    expect(await app`SELECT advance_view(${view}) > 0 AS passed`).toEqual([{ passed: true }]);
    expect(await app`SELECT "offset" FROM locks WHERE view = ${view} AND decider_id = ${deciderId}`).toEqual([
      { offset: second.offset },
    ]);
    expect(await app`SELECT count(*)::int AS n FROM log_head()`).toEqual([{ n: 1 }]);
    expect(await app`SELECT log_horizon() IS NOT NULL AS known`).toEqual([{ known: true }]);

    const leased = await app<{ lease_id: string; offset: string }[]>`
      SELECT * FROM lease_events(${view}, 1000, 2, 30) WHERE decider_id = ${deciderId}`;
    expect(leased).toHaveLength(2);
    const token = leased[0]?.lease_id as string;
    expect(await app`SELECT renew_lease(${view}, ${deciderId}, ${token}, 60) AS held`).toEqual([
      { held: true },
    ]);
    const [acked] =
      await app`SELECT * FROM ack_events(${view}, ${deciderId}, ${token}, ${first.offset}, false)`;
    expect(Number(acked?.last_offset)).toBe(Number(first.offset));
    expect(
      await app`SELECT fail_event(${view}, ${deciderId}, ${token}, ${second.offset}, 'boom', 0, 1) AS outcome`,
    ).toEqual([{ outcome: 'parked' }]);
    expect(await app`SELECT count(*)::int AS n FROM list_parked_events(${view})`).toEqual([{ n: 1 }]);
    await app`SELECT * FROM retry_parked_event(${view}, ${second.offset})`;
    await app`SELECT * FROM discard_parked_event(${view}, ${second.offset})`;
    expect(await app`SELECT count(*)::int AS n FROM list_parked_events(${view})`).toEqual([{ n: 0 }]);

    await app`SELECT * FROM reset_view(${view}, '2000-01-01'::timestamp)`;
    const again = await app<{ lease_id: string }[]>`
      SELECT * FROM lease_events(${view}, 1000, 10, 30) WHERE decider_id = ${deciderId}`;
    expect(again).toHaveLength(2);
    const againToken = again[0]?.lease_id as string;
    expect(await app`SELECT release_lease(${view}, ${deciderId}, ${againToken}, 0) AS held`).toEqual([
      { held: true },
    ]);

    // fstore-sql's own streaming functions.
    const [event] = await app<
      { offset: string }[]
    >`SELECT * FROM stream_events(${view}, 1000, 30) WHERE decider_id = ${deciderId}`;
    await app`SELECT * FROM schedule_nack_event(${view}, ${deciderId}, 0)`;
    await app`SELECT * FROM nack_event(${view}, ${deciderId})`;
    await app`SELECT * FROM ack_event(${view}, ${deciderId}, ${event?.offset ?? null})`;

    // ack_leases: several leases acknowledged at once.
    {
      const other = `stream-${randomUUID()}`;
      const otherEvent = await appendAs(app, other, null);
      const leases = await app<{ decider_id: string; lease_id: string; offset: string }[]>`
        SELECT DISTINCT ON (decider_id) decider_id, lease_id, "offset" FROM lease_events(${view}, 1000, 1, 30)
        WHERE decider_id IN (${deciderId}, ${other}) ORDER BY decider_id, "offset"`;
      expect(leases).toHaveLength(2);
      const acks = JSON.stringify(
        leases.map((l) => ({ decider_id: l.decider_id, lease_id: l.lease_id, offset: Number(l.offset) })),
      );
      const [acked] = await app`SELECT ack_leases(${view}, ${acks}::text::jsonb) AS n`;
      expect(acked?.n).toBe(2);
      expect(otherEvent.offset).toBeDefined();
    }

    const status = await app`SELECT view, streams::int FROM view_status() WHERE view = ${view}`;
    expect(status).toEqual([{ view, streams: expect.any(Number) }]);
  });

  test('registers a view with a subscription and rebuilds it with another (the overloads 0010 adds)', async () => {
    const view = `view-${randomUUID()}`;
    const deciderId = `stream-${randomUUID()}`;
    await appendAs(app, deciderId, null);
    const [registered] = await app`
      SELECT subscribed_deciders, subscribed_events
      FROM register_view(${view}, 250::bigint, '2000-01-01'::timestamp, ARRAY['somebody-else'], NULL)`;
    expect(registered).toEqual({ subscribed_deciders: ['somebody-else'], subscribed_events: null });
    await app`SELECT advance_view(${view})`;
    expect(await app`SELECT * FROM locks WHERE view = ${view} AND decider_id = ${deciderId}`).toEqual([]);
    const [reset] = await app`
      SELECT subscribed_deciders FROM reset_view(${view}, '2000-01-01'::timestamp, ARRAY[${decider}::text], NULL)`;
    expect(reset).toEqual({ subscribed_deciders: [decider] });
    const leased =
      await app`SELECT * FROM lease_events(${view}, 1000, 10, 30) WHERE decider_id = ${deciderId}`;
    expect(leased).toHaveLength(1);
  });

  test('turns wake-ups on and off: set_wakeups creates the trigger as the owner', async () => {
    expect(await app`SELECT set_wakeups(true) AS on`).toEqual([{ on: true }]);
    const [row] =
      await db.sql`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = 't_notify_events_appended'`;
    expect(row?.n).toBe(1);
    await appendAs(app, `stream-${randomUUID()}`, null);
    expect(await app`SELECT set_wakeups(false) AS on`).toEqual([{ on: false }]);
  });

  const deniedOnTheLog = [
    [
      'INSERT INTO events',
      `INSERT INTO events (event, event_id, decider, decider_id, data, command_id) VALUES ('created', gen_random_uuid(), $1, 'direct', '{}', gen_random_uuid())`,
    ],
    ['UPDATE events', `UPDATE events SET data = '{"tampered": true}' WHERE decider = $1`],
    ['UPDATE events with no row matched', `UPDATE events SET data = '{}' WHERE decider = $1 AND false`],
    ['DELETE FROM events', `DELETE FROM events WHERE decider = $1`],
    ['TRUNCATE events', `TRUNCATE events`],
    ['INSERT INTO deciders', `INSERT INTO deciders (decider, event) VALUES ($1, 'sneaked-in')`],
    ['UPDATE deciders', `UPDATE deciders SET description = 'tampered' WHERE decider = $1`],
    ['DELETE FROM deciders', `DELETE FROM deciders WHERE decider = $1`],
    ['TRUNCATE deciders', `TRUNCATE deciders CASCADE`],
    ['COPY into events', `COPY events (event) FROM STDIN`],
  ] as const;

  test.each(deniedOnTheLog)('cannot %s directly: 42501, nothing written', async (_, statement) => {
    await appendAs(app, `stream-${randomUUID()}`, null);
    await expectDenied(app, statement, statement.includes('$1') ? [decider] : []);
  });

  const deniedOnStreaming = [
    [
      'INSERT INTO locks',
      `INSERT INTO locks (view, decider_id, "offset", last_offset, offset_final) VALUES ('v', 's', 1, 0, false)`,
    ],
    ['UPDATE locks (move a position)', `UPDATE locks SET last_offset = "offset"`],
    [
      'UPDATE locks (take a lease)',
      `UPDATE locks SET lease_id = gen_random_uuid(), locked_until = 'infinity'`,
    ],
    ['DELETE FROM locks', `DELETE FROM locks`],
    ['TRUNCATE locks', `TRUNCATE locks`],
    ['INSERT INTO views', `INSERT INTO views (view) VALUES ('sneaked-in')`],
    ['UPDATE views.start_at', `UPDATE views SET start_at = now()`],
    ['UPDATE views.view', `UPDATE views SET view = view || '-renamed'`],
    ['DELETE FROM views', `DELETE FROM views`],
    ['TRUNCATE views', `TRUNCATE views CASCADE`],
    [
      'INSERT INTO parked_events',
      `INSERT INTO parked_events (view, decider_id, "offset", event_id, error, attempts, stream_stopped) SELECT view, 's', 1, gen_random_uuid(), 'e', 1, false FROM views LIMIT 1`,
    ],
    ['UPDATE parked_events.offset', `UPDATE parked_events SET "offset" = "offset" + 1`],
    ['UPDATE parked_events.stream_stopped', `UPDATE parked_events SET stream_stopped = false`],
    ['TRUNCATE parked_events', `TRUNCATE parked_events`],
    [
      'INSERT INTO view_frontiers',
      `INSERT INTO view_frontiers (view) SELECT view FROM views LIMIT 1 ON CONFLICT DO NOTHING`,
    ],
    [
      'UPDATE view_frontiers (move a frontier past the log)',
      `UPDATE view_frontiers SET transaction_id = '9999999999'::xid8, "offset" = 9999999999`,
    ],
    ['DELETE FROM view_frontiers', `DELETE FROM view_frontiers`],
    ['TRUNCATE view_frontiers', `TRUNCATE view_frontiers`],
    ['take an offset from the sequence', `SELECT nextval('events_offset_seq')`],
    ['call the trigger helper reset_view_positions', `SELECT reset_view_positions('v', now()::timestamp)`],
    ['call raise_lease_lost', `SELECT raise_lease_lost('v', 's', gen_random_uuid())`],
    ['call raise_beyond_lease', `SELECT raise_beyond_lease('v', 's', gen_random_uuid(), 1)`],
    ['create a table in public', `CREATE TABLE public.sneaked_in (x int)`],
    [
      'create a function in public (to shadow a built-in inside the SECURITY DEFINER functions)',
      `CREATE FUNCTION public.jsonb_array_length(jsonb) RETURNS int LANGUAGE sql AS 'SELECT 1'`,
    ],
  ] as const;

  test.each(deniedOnStreaming)('cannot %s: 42501, nothing written', async (_, statement) => {
    const view = `view-${randomUUID()}`;
    await app`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
    await appendAs(app, `stream-${randomUUID()}`, null);
    await expectDenied(app, statement);
  });

  test('cannot set views.lock_timeout_s directly, but sets it through set_view_lock_timeout', async () => {
    const view = `view-${randomUUID()}`;
    await app`SELECT * FROM register_view(${view}, 500::bigint, '2000-01-01'::timestamp)`;
    await expectDenied(app, `UPDATE views SET lock_timeout_s = 42 WHERE view = $1`, [view]);
    const [row] =
      await app`SELECT lock_timeout_s::int, pooling_delay_ms::int FROM set_view_lock_timeout(${view}, 42)`;
    expect(row).toEqual({ lock_timeout_s: 42, pooling_delay_ms: 500 });
    expect(await app`SELECT lock_timeout_s::int FROM views WHERE view = ${view}`).toEqual([
      { lock_timeout_s: 42 },
    ]);
  });

  test('cannot lock, update or delete parked events directly, but retries them as a projection worker does: claim_parked_event, ack_parked_event, fail_parked_event', async () => {
    const view = `view-${randomUUID()}`;
    await app`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(app, deciderId, null);
    const second = await appendAs(app, deciderId, first.event_id);
    const [lease] = await app<
      { lease_id: string }[]
    >`SELECT * FROM lease_events(${view}, 1000, 2, 30) WHERE decider_id = ${deciderId}`;
    await app`SELECT fail_event(${view}, ${deciderId}, ${lease?.lease_id ?? null}, ${first.offset}, 'boom', 0, 1)`;
    await app`SELECT * FROM retry_parked_event(${view}, ${first.offset})`;

    for (const statement of [
      `SELECT "offset" FROM parked_events WHERE view = $1 AND retry_requested_at IS NOT NULL FOR UPDATE SKIP LOCKED`,
      `UPDATE parked_events SET attempts = attempts + 1, error = 'again', retry_requested_at = NULL, parked_at = now() WHERE view = $1`,
      `DELETE FROM parked_events WHERE view = $1`,
    ]) {
      await expectDenied(app, statement, [view]);
    }

    // A retry that fails: claimed in a transaction that rolls back, then recorded.
    await app
      .begin(async (tx) => {
        const [claimed] = await tx`SELECT attempts, "offset", event FROM claim_parked_event(${view})`;
        expect(claimed).toEqual({ attempts: 1, offset: first.offset, event: 'created' });
        throw new Error('handler failed');
      })
      .catch(() => {});
    const [failed] =
      await app`SELECT attempts, error, retry_requested_at FROM fail_parked_event(${view}, ${first.offset}, 'again')`;
    expect(failed).toEqual({ attempts: 2, error: 'again', retry_requested_at: null });
    expect(await app`SELECT * FROM claim_parked_event(${view})`).toEqual([]);

    // A retry that succeeds: claimed and removed in the handler's transaction.
    await app`SELECT * FROM retry_parked_event(${view}, ${first.offset})`;
    await app.begin(async (tx) => {
      const [claimed] = await tx`SELECT "offset" FROM claim_parked_event(${view})`;
      expect(claimed?.offset).toBe(first.offset);
      await tx`SELECT * FROM ack_parked_event(${view}, ${first.offset})`;
    });
    expect(await app`SELECT count(*)::int AS n FROM list_parked_events(${view})`).toEqual([{ n: 0 }]);
    expect(second.offset).toBeDefined();
  });
});

describe('the read-only role', () => {
  test('reads every table and calls the read functions', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const appended = await appendAs(app, deciderId, null);
    for (const table of [
      'events',
      'deciders',
      'views',
      'view_frontiers',
      'locks',
      'parked_events',
      'snapshots',
    ]) {
      await reader.unsafe(`SELECT count(*) FROM ${table}`);
    }
    // Snapshots: read, never written.
    expect(await reader`SELECT count(*)::int AS n FROM get_snapshot(${decider}, ${deciderId}, 'v1')`).toEqual(
      [{ n: 0 }],
    );
    await expectDenied(
      reader,
      `SELECT * FROM save_snapshot('${decider}', '${deciderId}', 'v1', ${appended.offset}, '{}')`,
    );
    expect(await reader`SELECT count(*)::int AS n FROM get_events(${deciderId})`).toEqual([{ n: 1 }]);
    expect(await reader`SELECT count(*)::int AS n FROM get_events(${deciderId}, ${decider})`).toEqual([
      { n: 1 },
    ]);
    expect(await reader`SELECT count(*)::int AS n FROM get_last_event(${deciderId}, ${decider})`).toEqual([
      { n: 1 },
    ]);
    expect(await reader`SELECT count(*)::int AS n FROM get_events(${deciderId}, ${decider}, 0, 10)`).toEqual([
      { n: 1 },
    ]);
    expect(await reader`SELECT decider_id FROM get_event(${appended.event_id})`).toEqual([
      { decider_id: deciderId },
    ]);
    await reader`SELECT * FROM view_status()`;
    await reader`SELECT * FROM list_parked_events()`;
    expect(await reader`SELECT count(*)::int AS n FROM log_head()`).toEqual([{ n: 1 }]);
    expect(await reader`SELECT log_horizon() IS NOT NULL AS known`).toEqual([{ known: true }]);
  });

  const writes = [
    `SELECT * FROM register_decider_event('d', 'e')`,
    `SELECT * FROM register_decider_event('d', 'e', 'x', 1)`,
    `SELECT * FROM append_event('created', gen_random_uuid(), 'd', 's', '{}', gen_random_uuid(), NULL)`,
    `SELECT * FROM append_event('created', gen_random_uuid(), 'd', 's', '{}', gen_random_uuid(), NULL, 1, false)`,
    `SELECT * FROM append_events('d', 's', NULL, gen_random_uuid(), '[]')`,
    `SELECT * FROM register_view('v')`,
    `SELECT * FROM register_view('v', 1::bigint, now()::timestamp)`,
    `SELECT * FROM register_view('v', 1::bigint, now()::timestamp, ARRAY['d'], NULL)`,
    `SELECT advance_view('v')`,
    `SELECT advance_view('v', 10)`,
    `SELECT * FROM stream_events('v')`,
    `SELECT * FROM ack_event('v', 's', 1)`,
    `SELECT * FROM nack_event('v', 's')`,
    `SELECT * FROM schedule_nack_event('v', 's', 1)`,
    `SELECT * FROM lease_events('v')`,
    `SELECT * FROM ack_events('v', 's', gen_random_uuid(), 1)`,
    `SELECT renew_lease('v', 's', gen_random_uuid(), 5)`,
    `SELECT release_lease('v', 's', gen_random_uuid())`,
    `SELECT fail_event('v', 's', gen_random_uuid(), 1, 'e', 0, 1)`,
    `SELECT * FROM retry_parked_event('v', 1)`,
    `SELECT * FROM discard_parked_event('v', 1)`,
    `SELECT * FROM reset_view('v', now()::timestamp)`,
    `SELECT * FROM reset_view('v', now()::timestamp, ARRAY['d'], NULL)`,
    `SELECT set_wakeups(true)`,
    `SELECT * FROM set_view_lock_timeout('v', 60)`,
    `SELECT * FROM claim_parked_event('v')`,
    `SELECT * FROM ack_parked_event('v', 1)`,
    `SELECT * FROM fail_parked_event('v', 1, 'e')`,
  ];

  test.each(writes)('cannot call %s: 42501, nothing written', async (statement) => {
    await expectDenied(reader, statement);
  });

  test.each([
    `INSERT INTO events (event, event_id, decider, decider_id, data, command_id) VALUES ('created', gen_random_uuid(), 'd', 's', '{}', gen_random_uuid())`,
    `UPDATE events SET data = '{}'`,
    `DELETE FROM events`,
    `TRUNCATE events`,
    `INSERT INTO deciders (decider, event) VALUES ('d', 'e')`,
    `UPDATE deciders SET description = 'x'`,
    `DELETE FROM deciders`,
    `UPDATE locks SET last_offset = 0`,
    `DELETE FROM locks`,
    `UPDATE views SET lock_timeout_s = 1`,
    `DELETE FROM views`,
    `UPDATE parked_events SET attempts = 0`,
    `DELETE FROM parked_events`,
    `SELECT 1 FROM parked_events FOR UPDATE`,
    `UPDATE view_frontiers SET "offset" = 0`,
    `DELETE FROM view_frontiers`,
    `SELECT 1 FROM view_frontiers FOR NO KEY UPDATE`,
  ])('cannot %s: 42501, nothing written', async (statement) => {
    await appendAs(app, `stream-${randomUUID()}`, null);
    await expectDenied(reader, statement);
  });
});

describe('a malicious search_path cannot hijack the functions', () => {
  // A schema the application user owns, first on its search_path, ahead of pg_catalog: shadow tables named like
  // fstore's, and shadow functions and an operator that the API's bodies call. Each shadow function records that it
  // ran, and as whom, and tries to make the caller a superuser: inside a SECURITY DEFINER function owned by a
  // superuser, that would work.
  const evil = `evil_${suffix}`;
  let attacker: postgres.Sql;

  beforeAll(async () => {
    await db.sql.unsafe(`CREATE SCHEMA "${evil}" AUTHORIZATION "${names.app}"`);
    attacker = connectAs(names.app);
    const escalate = `
      INSERT INTO "${evil}".calls VALUES (%L, current_user);
      BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', session_user); EXCEPTION WHEN insufficient_privilege THEN NULL; END;`;
    const shadow = (name: string, args: string, returns: string, body: string) => `
      CREATE FUNCTION "${evil}".${name}(${args}) RETURNS ${returns} LANGUAGE plpgsql AS $shadow$
      BEGIN ${escalate.replace('%L', `'${name}'`)} ${body} END $shadow$`;
    for (const statement of [
      `CREATE TABLE "${evil}".calls (name text, as_user text)`,
      `CREATE TABLE "${evil}".events (LIKE public.events)`,
      `CREATE TABLE "${evil}".deciders (LIKE public.deciders)`,
      `CREATE TABLE "${evil}".locks (LIKE public.locks)`,
      `CREATE TABLE "${evil}".views (LIKE public.views)`,
      `CREATE TABLE "${evil}".parked_events (LIKE public.parked_events)`,
      `CREATE TABLE "${evil}".view_frontiers (LIKE public.view_frontiers)`,
      shadow('now', '', 'timestamptz', `RETURN '2000-01-01'::timestamptz;`),
      shadow('gen_random_uuid', '', 'uuid', `RETURN '00000000-0000-0000-0000-000000000000'::uuid;`),
      shadow('jsonb_array_length', 'v jsonb', 'int', 'RETURN 1;'),
      shadow('jsonb_typeof', 'v jsonb', 'text', `RETURN 'array';`),
      shadow('make_interval', 'secs double precision', 'interval', `RETURN interval '1 second';`),
      shadow('pg_get_serial_sequence', 'a text, b text', 'text', `RETURN 'public.events_offset_seq';`),
      // log_horizon's own reads: a horizon far ahead would let a frontier pass events still being written.
      shadow('pg_current_snapshot', '', 'pg_snapshot', `RETURN '1000000000:1000000000:'::pg_snapshot;`),
      shadow('pg_stat_clear_snapshot', '', 'void', 'RETURN;'),
      shadow('shadow_arrow', 'a jsonb, b text', 'text', `RETURN 'created';`),
      `CREATE OPERATOR "${evil}".->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = "${evil}".shadow_arrow)`,
      `GRANT ALL ON ALL TABLES IN SCHEMA "${evil}" TO PUBLIC`,
      `GRANT USAGE ON SCHEMA "${evil}" TO PUBLIC`,
    ]) {
      await attacker.unsafe(statement);
    }
    await attacker.unsafe(`SET search_path = "${evil}", pg_catalog, public`);
  });

  const calls = () => db.sql`SELECT name, as_user FROM ${db.sql(evil)}.calls ORDER BY name`;
  const isSuperuser = async () =>
    (await db.sql`SELECT rolsuper FROM pg_roles WHERE rolname = ${names.app}`)[0]?.rolsuper;

  test("control: the attacker's own unqualified queries do reach the shadow objects", async () => {
    expect(await attacker`SELECT count(*)::int AS n FROM events`).toEqual([{ n: 0 }]);
    expect(await attacker`SELECT now() AS now`).toEqual([{ now: new Date('2000-01-01T00:00:00Z') }]);
    expect(await calls()).toEqual([{ name: 'now', as_user: names.app }]);
    expect(await isSuperuser()).toBe(false);
    await db.sql`DELETE FROM ${db.sql(evil)}.calls`;
  });

  test('appends write to public.events with real ids and times, and call no shadow object', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const before = Date.now();
    const first = await appendAs(attacker, deciderId, null);
    await attacker`
      SELECT * FROM append_event('renamed', ${randomUUID()}, ${decider}, ${deciderId}, '{}', ${randomUUID()},
                                 ${first.event_id}, 1, false)`;
    const last = await attacker`SELECT * FROM get_last_event(${deciderId}, ${decider})`;
    await attacker`
      SELECT * FROM append_events(${decider}, ${deciderId}, ${last[0]?.event_id}, ${randomUUID()},
        ${JSON.stringify([
          { event: 'renamed', event_id: randomUUID(), data: {} },
          { event: 'renamed', event_id: randomUUID(), data: {} },
        ])}::text::jsonb)`;
    await attacker`SELECT * FROM register_decider_event(${decider}, 'third')`;

    const stored = await db.sql<{ event: string; created_at: Date }[]>`
      SELECT event, created_at FROM public.events WHERE decider_id = ${deciderId} ORDER BY "offset"`;
    expect(stored.map((e) => e.event)).toEqual(['created', 'renamed', 'renamed', 'renamed']);
    for (const event of stored) expect(event.created_at.getTime()).toBeGreaterThanOrEqual(before - 60_000);
    expect(await db.sql`SELECT count(*)::int AS n FROM ${db.sql(evil)}.events`).toEqual([{ n: 0 }]);
    expect(
      await db.sql`SELECT count(*)::int AS n FROM public.deciders WHERE decider = ${decider} AND event = 'third'`,
    ).toEqual([{ n: 1 }]);
    expect(await calls()).toEqual([]);
    expect(await isSuperuser()).toBe(false);
  });

  test('views, leases and acknowledgements use public.locks with real tokens and times, and call no shadow object', async () => {
    const view = `view-${randomUUID()}`;
    await attacker`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp, 60)`;
    const deciderId = `stream-${randomUUID()}`;
    const event = await appendAs(attacker, deciderId, null);
    const leased = await attacker<{ lease_id: string }[]>`
      SELECT * FROM lease_events(${view}, 1000, 10, 30) WHERE decider_id = ${deciderId}`;
    expect(leased).toHaveLength(1);
    expect(leased[0]?.lease_id).not.toBe('00000000-0000-0000-0000-000000000000');
    const [lock] = await db.sql`
      SELECT lease_id, locked_until > pg_catalog.now() + interval '20 seconds' AS held_for_30s
      FROM public.locks WHERE view = ${view} AND decider_id = ${deciderId}`;
    expect(lock).toEqual({ lease_id: leased[0]?.lease_id, held_for_30s: true });
    await attacker`SELECT renew_lease(${view}, ${deciderId}, ${leased[0]?.lease_id ?? null}, 60)`;
    await attacker`SELECT * FROM ack_events(${view}, ${deciderId}, ${leased[0]?.lease_id ?? null}, ${event.offset})`;
    await attacker`SELECT * FROM view_status()`;
    // The frontier, the head and the horizon come from public.view_frontiers, public.events and the real snapshot.
    const next = await appendAs(attacker, deciderId, event.event_id);
    expect(await attacker`SELECT advance_view(${view}) AS passed`).toEqual([{ passed: 1 }]);
    const [frontier] = await db.sql`SELECT "offset" FROM public.view_frontiers WHERE view = ${view}`;
    expect(frontier?.offset).toBe(next.offset);
    const [head] = await attacker`SELECT "offset" FROM log_head()`;
    expect(Number(head?.offset)).toBeGreaterThanOrEqual(Number(next.offset));
    const [horizon] = await attacker`SELECT log_horizon()::text AS horizon`;
    expect(BigInt(horizon?.horizon)).toBeLessThan(1_000_000_000n);
    expect(await db.sql`SELECT count(*)::int AS n FROM ${db.sql(evil)}.locks`).toEqual([{ n: 0 }]);
    expect(await db.sql`SELECT count(*)::int AS n FROM ${db.sql(evil)}.view_frontiers`).toEqual([{ n: 0 }]);
    expect(await calls()).toEqual([]);
    expect(await isSuperuser()).toBe(false);
  });

  test('the read functions read public.events, not the shadow table', async () => {
    const deciderId = `stream-${randomUUID()}`;
    await appendAs(attacker, deciderId, null);
    await attacker`INSERT INTO events SELECT * FROM public.events WHERE decider_id = ${deciderId}`;
    await attacker`UPDATE events SET event = 'forged' WHERE decider_id = ${deciderId}`;
    expect(await attacker`SELECT event FROM events WHERE decider_id = ${deciderId}`).toEqual([
      { event: 'forged' },
    ]);
    expect(await attacker`SELECT event FROM get_events(${deciderId})`).toEqual([{ event: 'created' }]);
    expect(await attacker`SELECT event FROM get_last_event(${deciderId}, ${decider})`).toEqual([
      { event: 'created' },
    ]);
    expect(await calls()).toEqual([]);
  });

  test('a temporary table named events captures neither appends nor reads (pg_temp is searched last)', async () => {
    const session = connectAs(names.app);
    await session`CREATE TEMP TABLE events (LIKE public.events)`;
    await session`CREATE TEMP TABLE locks (LIKE public.locks)`;
    // Unqualified, PostgreSQL looks in pg_temp first: this session's own queries see the temporary table.
    expect(await session`SELECT count(*)::int AS n FROM events`).toEqual([{ n: 0 }]);
    const deciderId = `stream-${randomUUID()}`;
    const first = await appendAs(session, deciderId, null);
    await appendAs(session, deciderId, first.event_id);
    expect(await session`SELECT count(*)::int AS n FROM get_events(${deciderId})`).toEqual([{ n: 2 }]);
    expect(await session`SELECT count(*)::int AS n FROM events`).toEqual([{ n: 0 }]);
    expect(
      await db.sql`SELECT count(*)::int AS n FROM public.events WHERE decider_id = ${deciderId}`,
    ).toEqual([{ n: 2 }]);
  });

  test('the migrations pin it, not the script: without the script, a function still reads public.events, not the events table the caller put first', async () => {
    const plain = await createTestDatabase();
    otherDatabases.push(plain);
    const session = plain.connect({ max: 1 });
    await session.unsafe(
      `CREATE SCHEMA shadow; CREATE TABLE shadow.events (LIKE public.events INCLUDING DEFAULTS)`,
    );
    await session`
      INSERT INTO shadow.events (event, event_id, decider, decider_id, data, command_id)
      VALUES ('forged', ${randomUUID()}, 'd', 's', '{}', ${randomUUID()})`;
    await session.unsafe('SET search_path = shadow, public');
    expect(await session`SELECT event FROM events`).toEqual([{ event: 'forged' }]);
    expect(await session`SELECT event FROM get_events('s')`).toEqual([]);
  });
});

describe('with a dedicated owner role that is not a superuser (the recommended set-up)', () => {
  test('an administrator creates the roles; the owner migrates and applies the script, without the superuser warning; the application role works', async () => {
    const database = await createTestDatabase({ from: 'empty' });
    otherDatabases.push(database);
    const roles = { app: `${names.appRole}_o`, reader: `${names.readerRole}_o` };
    // The owner has no CREATEROLE: an administrator creates the two roles, and the login user, beforehand.
    await db.sql.unsafe(`CREATE ROLE "${names.owner}" LOGIN PASSWORD '${password}'`);
    await db.sql.unsafe(`CREATE ROLE "${roles.app}" NOLOGIN`);
    await db.sql.unsafe(`CREATE ROLE "${roles.reader}" NOLOGIN`);
    await db.sql.unsafe(
      `CREATE ROLE "${names.ownerApp}" LOGIN PASSWORD '${password}' IN ROLE "${roles.app}"`,
    );
    await database.sql.unsafe(`ALTER DATABASE "${database.name}" OWNER TO "${names.owner}"`);
    // PostgreSQL 14's schema public belongs to the bootstrap superuser (15 and later: to the database owner).
    await database.sql.unsafe(`ALTER SCHEMA public OWNER TO "${names.owner}"`);
    const notices: string[] = [];
    const owner = database.connect({
      user: names.owner,
      pass: password,
      max: 1,
      onnotice: (notice: postgres.Notice) => notices.push(String(notice.message)),
    } as postgres.Options<Record<string, never>>);
    try {
      await migrate(owner);
      await applyScript(owner, roles);
      expect(notices.join('\n')).not.toMatch(/superuser/);
      expect(notices.join('\n')).toMatch(/applied for roles/);
      const user = database.connect({ user: names.ownerApp, pass: password, max: 1 } as postgres.Options<
        Record<string, never>
      >);
      await user`SELECT * FROM register_decider_event('d', 'e')`;
      await user`SELECT * FROM register_view('v', '2000-01-01'::timestamp)`;
      await user`SELECT * FROM append_event('e', ${randomUUID()}, 'd', 's', '{}', ${randomUUID()}, NULL)`;
      const [lease] = await user<{ lease_id: string; offset: string }[]>`SELECT * FROM lease_events('v')`;
      await user`SELECT * FROM ack_events('v', 's', ${lease?.lease_id ?? null}, ${lease?.offset ?? null})`;
      expect(await user`SELECT set_wakeups(true) AS on, set_wakeups(false) AS off`).toEqual([
        { on: true, off: false },
      ]);
      expect(await failureOf(() => user`DELETE FROM events`)).toMatchObject({ code: '42501' });
      expect(await failureOf(() => user`UPDATE deciders SET description = 'x'`)).toMatchObject({
        code: '42501',
      });
      // The owner keeps fstore-sql's silent no-ops: the rules still swallow its UPDATE and DELETE of the log.
      expect((await owner`DELETE FROM events`).count).toBe(0);
      expect(await owner`SELECT count(*)::int AS n FROM events`).toEqual([{ n: 1 }]);
    } finally {
      await database.drop();
      otherDatabases = otherDatabases.filter((other) => other !== database);
      for (const role of [names.ownerApp, roles.app, roles.reader, names.owner]) {
        await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
      }
    }
  });
});

describe('an upgrade keeps the application role working, without the script running again', () => {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { idx: number; version: string; when: number; tag: string; breakpoints: boolean }[];
  };
  const folders: string[] = [];
  afterAll(() => {
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
  });

  /** A copy of the migrations folder with the journal's first `count` entries, then `extra` migrations. */
  function migrationsFolderWith(count: number, extra: { tag: string; sql: string }[] = []): string {
    const folder = mkdtempSync(join(tmpdir(), 'fstore-upgrade-'));
    folders.push(folder);
    cpSync(migrationsFolder, folder, { recursive: true });
    const entries = journal.entries.slice(0, count);
    for (const migration of extra) {
      const last = entries.at(-1) as (typeof entries)[number];
      entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag: migration.tag });
      writeFileSync(join(folder, `${migration.tag}.sql`), migration.sql);
    }
    writeFileSync(join(folder, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries }, null, 2));
    return folder;
  }

  /** drizzle-orm's own migrator, on fstore's migrations table (migrate() always reads the package's folder). */
  const migrateFolder = (sql: postgres.Sql, folder: string) =>
    drizzleMigrate(drizzle(sql), { migrationsFolder: folder, migrationsTable, migrationsSchema });

  test('from migration 0006 and the script of then, through the later migrations and one that replaces functions with their current definition (pg_get_functiondef)', async () => {
    const database = await createTestDatabase({ from: 'empty' });
    otherDatabases.push(database);
    const roles = { app: `${names.appRole}_u`, reader: `${names.readerRole}_u` };
    const user = `upgrade_user_${suffix}`;
    try {
      const before0007 = journal.entries.findIndex((entry) => entry.tag === '0007_security_in_migrations');
      expect(before0007).toBeGreaterThan(0);
      await migrateFolder(database.sql, migrationsFolderWith(before0007));
      const oldScript = readFileSync(
        new URL('./test-support/least-privilege.0006.sql', import.meta.url),
        'utf8',
      );
      await database.sql.begin(async (tx) => {
        await tx`SELECT set_config('fstore.app_role', ${roles.app}, true), set_config('fstore.reader_role', ${roles.reader}, true)`;
        await tx.unsafe(oldScript);
      });
      await database.sql.unsafe(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}' IN ROLE "${roles.app}"`);
      const appUser = connectAs(user, database);
      await appUser`SELECT * FROM register_decider_event('d', 'e')`;

      // The upgrade: fstore's migrations, then a later one that replaces functions with what PostgreSQL says they
      // are now (as a migration author copies them from sql/schema.sql), revoking EXECUTE from PUBLIC as the check
      // requires of the writing ones.
      expect((await migrate(database.sql)).applied).toEqual(
        journal.entries.slice(before0007).map((entry) => entry.tag),
      );
      const replaced = await database.sql<{ signature: string; definition: string; writes: boolean }[]>`
        SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition,
               p.proname = ANY (${lists.write}) AS writes
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND p.proname IN ('append_events', 'register_view', 'lease_events', 'ack_events', 'fail_event',
                            'retry_parked_event', 'claim_parked_event', 'ack_parked_event', 'set_view_lock_timeout',
                            'get_events', 'check_event_append', 'advance_view', 'reset_view', 'log_head',
                            'log_horizon')
        ORDER BY 1`;
      // register_view, reset_view, get_events, lease_events and append_events in every overload (0010 adds one to
      // the first two, 0012 one to lease_events, 0013 and 0016 one each to append_events).
      expect(replaced.map((fn) => fn.signature.replace(/\(.*/, ''))).toEqual([
        'ack_events',
        'ack_parked_event',
        'advance_view',
        'append_events',
        'append_events',
        'append_events',
        'check_event_append',
        'claim_parked_event',
        'fail_event',
        'get_events',
        'get_events',
        'get_events',
        'lease_events',
        'lease_events',
        'log_head',
        'log_horizon',
        'register_view',
        'register_view',
        'register_view',
        'reset_view',
        'reset_view',
        'retry_parked_event',
        'set_view_lock_timeout',
      ]);
      const synthetic = [
        ...replaced.map((fn) => `${fn.definition.trimEnd()};`),
        ...replaced
          .filter((fn) => fn.writes)
          .map((fn) => `REVOKE EXECUTE ON FUNCTION ${fn.signature} FROM PUBLIC;`),
      ].join('\n--> statement-breakpoint\n');
      expect(synthetic).toMatch(/SECURITY DEFINER/);
      await migrateFolder(
        database.sql,
        migrationsFolderWith(journal.entries.length, [{ tag: '9999_replace_functions', sql: synthetic }]),
      );
      const [recorded] = await database.sql.unsafe(
        `SELECT count(*)::int AS n FROM "${migrationsSchema}"."${migrationsTable}"`,
      );
      expect(recorded?.n).toBe(journal.entries.length + 1);
      const security = await database.sql.unsafe<FunctionSecurity[]>(securityProblemsQuery, listParameters());
      expect(securityProblems(security)).toEqual([]);

      // The application role, as the script of 0006 left it: append, register a view (with a lease length), lease,
      // acknowledge, park, retry the parked event as a worker does, read a page.
      const view = `view-${randomUUID()}`;
      await appUser`SELECT * FROM register_view(${view}, 250::bigint, '2000-01-01'::timestamp)`;
      expect(await appUser`SELECT lock_timeout_s::int FROM set_view_lock_timeout(${view}, 45)`).toEqual([
        { lock_timeout_s: 45 },
      ]);
      const stream = `stream-${randomUUID()}`;
      const appended = await appUser<{ event_id: string; offset: string }[]>`
        SELECT * FROM append_events('d', ${stream}, NULL, ${randomUUID()},
          ${JSON.stringify([1, 2, 3].map((n) => ({ event: 'e', event_id: randomUUID(), data: { n } })))}::text::jsonb)`;
      expect(appended).toHaveLength(3);
      // The functions 0010 adds were granted like their siblings, to the role the script of 0006 made.
      expect(await appUser`SELECT advance_view(${view}) >= 3 AS passed`).toEqual([{ passed: true }]);
      expect(await appUser`SELECT count(*)::int AS n FROM log_head()`).toEqual([{ n: 1 }]);
      expect(await appUser`SELECT log_horizon() IS NOT NULL AS known`).toEqual([{ known: true }]);
      const subscribed = `subscribed-${randomUUID()}`;
      await appUser`SELECT * FROM register_view(${subscribed}, 250::bigint, '2000-01-01'::timestamp, ARRAY['d'], NULL)`;
      await appUser`SELECT * FROM reset_view(${subscribed}, '2000-01-01'::timestamp, ARRAY['d'], ARRAY['e'])`;
      expect(
        await appUser`SELECT count(*)::int AS n FROM lease_events(${subscribed}, 10, 10, 30) WHERE decider_id = ${stream}`,
      ).toEqual([{ n: 3 }]);
      const leased = await appUser<{ lease_id: string; offset: string }[]>`
        SELECT * FROM lease_events(${view}, 10, 10, 30) WHERE decider_id = ${stream}`;
      expect(leased).toHaveLength(3);
      const lease = leased[0]?.lease_id ?? null;
      await appUser`SELECT * FROM ack_events(${view}, ${stream}, ${lease}, ${appended[0]?.offset ?? null}, false)`;
      expect(
        await appUser`SELECT fail_event(${view}, ${stream}, ${lease}, ${appended[1]?.offset ?? null}, 'boom', 0, 1) AS outcome`,
      ).toEqual([{ outcome: 'parked' }]);
      await appUser`SELECT * FROM retry_parked_event(${view}, ${appended[1]?.offset ?? null})`;
      await appUser.begin(async (tx) => {
        const [claimed] = await tx`SELECT "offset" FROM claim_parked_event(${view})`;
        expect(claimed?.offset).toBe(appended[1]?.offset);
        await tx`SELECT * FROM ack_parked_event(${view}, ${claimed?.offset ?? null})`;
      });
      expect(await appUser`SELECT count(*)::int AS n FROM list_parked_events(${view})`).toEqual([{ n: 0 }]);
      expect(
        await appUser`SELECT count(*)::int AS n FROM get_events(${stream}, 'd', ${appended[0]?.offset ?? null}::bigint, 10)`,
      ).toEqual([{ n: 2 }]);
      expect(await failureOf(() => appUser`DELETE FROM events`)).toMatchObject({ code: '42501' });

      // The script of 0006 had granted direct writes on parked_events and views.lock_timeout_s; the current one,
      // run again whenever convenient, takes them back.
      const directWrites = () =>
        database.sql`SELECT has_table_privilege(${user}, 'parked_events', 'DELETE') AS parked,
                            has_column_privilege(${user}, 'views', 'lock_timeout_s', 'UPDATE') AS views`;
      expect(await directWrites()).toEqual([{ parked: true, views: true }]);
      await database.sql.begin(async (tx) => {
        await tx`SELECT set_config('fstore.app_role', ${roles.app}, true), set_config('fstore.reader_role', ${roles.reader}, true)`;
        await tx.unsafe(script);
      });
      expect(await directWrites()).toEqual([{ parked: false, views: false }]);
      expect(await appUser`SELECT * FROM claim_parked_event(${view})`).toEqual([]);
    } finally {
      await database.drop();
      otherDatabases = otherDatabases.filter((other) => other !== database);
      for (const role of [user, roles.app, roles.reader]) await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
    }
  });
});
