/**
 * @fstore/stream under @fstore/schema's optional least-privilege script (sql/least-privilege.sql): a projection
 * worker runs end to end as a login user of the application role, with its read model in a schema of its own:
 * leases, acknowledgements, failures, parking, the retry of a parked event, rebuilds, wake-ups, all through the SQL
 * API's functions: the role may not INSERT, UPDATE or DELETE any fstore table. A user of the read-only role reads the
 * status and the parked events, and nothing more.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { databaseError } from '@fstore/store/internal';
import { createTestDatabase, withDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { type DashboardState, startDashboard } from './dashboard/server.js';
import {
  leaseEvents,
  listParkedEvents,
  registerView,
  retryParkedEvent,
  setWakeups,
  viewStatus,
} from './functions.js';
import { createProjection, type Projection } from './projection.js';
import { rebuildProjection } from './rebuild.js';

const schemaPackage = dirname(createRequire(import.meta.url).resolve('@fstore/schema/package.json'));
const script = readFileSync(join(schemaPackage, 'sql', 'least-privilege.sql'), 'utf8');

const suffix = randomBytes(4).toString('hex');
const password = `pw-${suffix}`;
const roles = { app: `fstore_app_${suffix}`, reader: `fstore_reader_${suffix}` };
const users = { app: `app_user_${suffix}`, reader: `reader_user_${suffix}` };

const database = await createTestDatabase();
const admin = postgres(withDatabase(database.url, 'postgres'), { max: 1, onnotice: () => {} });
const connectAs = (user: string, max: number) =>
  database.connect({ user, pass: password, max } as postgres.Options<Record<string, never>>);

beforeAll(async () => {
  await database.sql.begin(async (tx) => {
    await tx`SELECT set_config('fstore.app_role', ${roles.app}, true), set_config('fstore.reader_role', ${roles.reader}, true)`;
    await tx.unsafe(script);
  });
  await database.sql.unsafe(`CREATE ROLE "${users.app}" LOGIN PASSWORD '${password}' IN ROLE "${roles.app}"`);
  await database.sql.unsafe(
    `CREATE ROLE "${users.reader}" LOGIN PASSWORD '${password}' IN ROLE "${roles.reader}"`,
  );
  // The application's own read model lives in a schema of its own.
  await database.sql.unsafe(`CREATE SCHEMA app AUTHORIZATION "${users.app}"`);
});

afterAll(async () => {
  await database.drop();
  for (const role of [users.app, users.reader, roles.app, roles.reader]) {
    await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  }
  await admin.end();
});

const tasks = defineEvents('Task', {
  TaskAdded: event<{ title: string }>(),
  TaskDone: event<{ by: string }>(),
});

const appDb = drizzle(connectAs(users.app, 4));
const workerDb = drizzle(connectAs(users.app, 8));
const readerDb = drizzle(connectAs(users.reader, 2));
const store = createEventStore(appDb, tasks);

beforeAll(async () => {
  await store.register();
  await appDb.execute(
    sql`CREATE TABLE app.projected (view text NOT NULL, decider_id text NOT NULL, "offset" bigint NOT NULL)`,
  );
});

const running: Projection[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});

async function until(condition: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function projected(view: string): Promise<number[]> {
  const rows = (await appDb.execute(
    sql`SELECT "offset" FROM app.projected WHERE view = ${view} ORDER BY "offset"`,
  )) as unknown as { offset: string }[];
  return rows.map((row) => Number(row.offset));
}

async function appendStream(count: number): Promise<{ id: string; offsets: number[] }> {
  const id = `task-${randomUUID()}`;
  const stored = await store.append(
    id,
    Array.from({ length: count }, (_, i) =>
      i === 0
        ? { type: 'TaskAdded' as const, data: { title: 't' } }
        : { type: 'TaskDone' as const, data: { by: 'p' } },
    ),
    { expectedLastEventId: null },
  );
  return { id, offsets: stored.map((e) => e.offset) };
}

describe('a projection worker as a user of the application role', () => {
  test('holds no write privilege on any fstore table: everything below goes through functions', async () => {
    const rows = (await appDb.execute(sql`
      SELECT t AS "table", has_table_privilege(t, 'INSERT') OR has_table_privilege(t, 'UPDATE')
                           OR has_table_privilege(t, 'DELETE') OR has_any_column_privilege(t, 'UPDATE') AS writes
      FROM unnest(ARRAY ['events', 'deciders', 'views', 'locks', 'parked_events']) AS t`)) as unknown as {
      table: string;
      writes: boolean;
    }[];
    expect(rows.filter((row) => row.writes)).toEqual([]);
    expect(rows).toHaveLength(5);
  });

  test('projects every event once, parks a poison event, and handles it alone when an operator retries it', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(appDb, view);
    const { offsets } = await appendStream(3);
    let healthy = false;
    let failuresAfterRetry = 0;
    const projection = createProjection({
      db: workerDb,
      view,
      events: [tasks],
      pollIntervalMs: 50,
      leaseSeconds: 5,
      maxAttempts: 1,
      backoff: { initialMs: 20, maxMs: 100 },
      async handle(e, tx, context) {
        if (e.offset === offsets[1] && !healthy) {
          if (context.attempt > 1) failuresAfterRetry++;
          throw new Error('poison');
        }
        await tx.execute(sql`INSERT INTO app.projected VALUES (${view}, ${e.deciderId}, ${e.offset})`);
      },
    });
    running.push(projection);
    await projection.start();
    await until(async () => (await projected(view)).length === 2);
    expect(await listParkedEvents(appDb, view)).toHaveLength(1);

    // A retry that fails again: the worker claims it (claim_parked_event), its transaction rolls back, and it records
    // the failure (fail_parked_event).
    await retryParkedEvent(appDb, view, offsets[1] as number);
    await until(async () => failuresAfterRetry === 1);
    await until(async () => (await listParkedEvents(appDb, view))[0]?.retryRequestedAt === null);
    expect((await listParkedEvents(appDb, view))[0]?.attempts).toBe(2);

    // A retry that succeeds: the worker claims the parked event and removes it (ack_parked_event) in the transaction
    // of the read model's write.
    healthy = true;
    await retryParkedEvent(appDb, view, offsets[1] as number);
    await until(async () => (await projected(view)).length === 3);
    expect(await projected(view)).toEqual(offsets);
    await until(async () => (await listParkedEvents(appDb, view)).length === 0);
  });

  test('rebuilds the read model, and registers a view with both a polling delay and a lease length', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(appDb, view, { pollIntervalMs: 250, leaseSeconds: 45 });
    const [registered] = (await appDb.execute(
      sql`SELECT lock_timeout_s::int AS s, pooling_delay_ms::int AS ms FROM views WHERE view = ${view}`,
    )) as unknown as { s: number; ms: number }[];
    expect(registered).toEqual({ s: 45, ms: 250 });
    const { offsets } = await appendStream(2);
    const projection = createProjection({
      db: workerDb,
      view,
      events: [tasks],
      pollIntervalMs: 50,
      async handle(e, tx) {
        await tx.execute(sql`INSERT INTO app.projected VALUES (${view}, ${e.deciderId}, ${e.offset})`);
      },
    });
    running.push(projection);
    await projection.start();
    // The view was registered now: only events appended after it are read.
    await until(async () => (await projected(view)).length === 2);
    await rebuildProjection(appDb, {
      view,
      startAt: new Date(0),
      reset: async (tx) => {
        await tx.execute(sql`DELETE FROM app.projected WHERE view = ${view}`);
      },
    });
    await until(async () => (await viewStatus(appDb)).find((s) => s.view === view)?.eventsBehind === 0);
    const after = await projected(view);
    expect(after.length).toBeGreaterThanOrEqual(2);
    expect(new Set(after).size).toBe(after.length);
    expect(after).toEqual(expect.arrayContaining(offsets));
  });

  test.each([
    ['NOTIFY wake-ups (turned on by the application role)', 'notify'],
    ['the probe of the log head (the default)', 'probe'],
  ] as const)(
    '%s: an appended event reaches an idle worker well within its polling delay',
    async (_, wakeups) => {
      if (wakeups === 'notify') await setWakeups(appDb, true);
      try {
        const view = `view-${randomUUID()}`;
        await registerView(appDb, view);
        const seen: number[] = [];
        const projection = createProjection({
          db: workerDb,
          view,
          events: [tasks],
          pollIntervalMs: 5000,
          wakeups,
          async handle() {
            seen.push(Date.now());
          },
        });
        running.push(projection);
        await projection.start();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const appendedAt = Date.now();
        await appendStream(1);
        await until(async () => seen.length === 1, 4000);
        expect((seen[0] as number) - appendedAt).toBeLessThan(1500);
      } finally {
        if (wakeups === 'notify') await setWakeups(appDb, false);
      }
    },
  );
});

describe('a user of the read-only role', () => {
  test('reads the status and the parked events', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(appDb, view, { startAt: new Date(0) });
    expect((await viewStatus(readerDb)).some((s) => s.view === view)).toBe(true);
    expect(await listParkedEvents(readerDb, view)).toEqual([]);
  });

  test('cannot register a view, lease, or turn wake-ups on: permission denied (42501), nothing written', async () => {
    const view = `view-${randomUUID()}`;
    const failures = await Promise.all([
      registerView(readerDb, view).catch((error: unknown) => error),
      leaseEvents(readerDb, view, { streams: 1, eventsPerStream: 1, leaseSeconds: 5 }).catch(
        (error: unknown) => error,
      ),
      setWakeups(readerDb, true).catch((error: unknown) => error),
    ]);
    expect(failures.map((failure) => databaseError(failure)?.code)).toEqual(['42501', '42501', '42501']);
    expect((await viewStatus(appDb)).some((s) => s.view === view)).toBe(false);
  });
  test("runs the dashboard: it shows the views and their lag, and its Retry is PostgreSQL's to refuse", async () => {
    const view = `view-${randomUUID()}`;
    await registerView(appDb, view, { startAt: new Date(0) });
    const dashboard = await startDashboard({ db: readerDb, port: 0, actions: true });
    try {
      const state = (await (await fetch(new URL('/api/state', dashboard.url))).json()) as DashboardState;
      expect(state.views.some((v) => v.view === view)).toBe(true);
      const page = await (await fetch(dashboard.url)).text();
      const csrf = page.match(/name="fstore-csrf" content="([^"]+)"/)?.[1] ?? '';
      const retry = await fetch(new URL('/api/parked/retry', dashboard.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': csrf },
        body: JSON.stringify({ view, offset: 1 }),
      });
      expect(retry.status).toBe(409);
      expect(((await retry.json()) as { error: string }).error).toMatch(/permission denied/);
    } finally {
      await dashboard.close();
    }
  });
});
