/**
 * What operators see and run: view_status figures, the `fstore status` command, and leasing that costs the same
 * whatever the number of streams (the plans PostgreSQL really runs, read with auto_explain).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ackEvents, failEvent, leaseEvents, registerView, viewStatus } from './functions.js';
import { formatStatusTable } from './status.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));
const notes = defineEvents('Note', { Noted: event<{ n: number }>() });
const store = createEventStore(db, notes);
beforeAll(() => store.register());

test('view_status reports streams, pending, leased and stopped streams, events behind, the oldest unread, parked', async () => {
  const view = `view-${randomUUID()}`;
  await registerView(db, view);
  const ids = [`a-${randomUUID()}`, `b-${randomUUID()}`, `c-${randomUUID()}`];
  for (const id of ids) {
    await store.append(
      id,
      [1, 2, 3].map((n) => ({ type: 'Noted' as const, data: { n } })),
      { expectedLastEventId: null },
    );
  }
  // Stream a: fully handled. Stream b: leased now. Stream c: its first event parked, and the stream stopped.
  const leased = await leaseEvents(db, view, { streams: 3, eventsPerStream: 3, leaseSeconds: 60 });
  const lease = (id: string) => {
    const row = leased.find((e) => e.deciderId === id);
    return {
      view,
      deciderId: id,
      leaseId: row?.leaseId ?? '',
      offsets: leased.filter((e) => e.deciderId === id).map((e) => e.offset),
    };
  };
  const [a, , c] = ids.map(lease) as [
    ReturnType<typeof lease>,
    ReturnType<typeof lease>,
    ReturnType<typeof lease>,
  ];
  await ackEvents(db, a, a.offsets[2] as number);
  await failEvent(db, c, {
    offset: c.offsets[0] as number,
    error: 'boom',
    retryMs: 0,
    maxAttempts: 1,
    stopStream: true,
  });
  const status = (await viewStatus(db)).find((s) => s.view === view);
  expect(status).toMatchObject({
    view,
    streams: 3,
    pendingStreams: 2,
    leasedStreams: 1,
    stoppedStreams: 1,
    eventsBehind: 6,
    parkedEvents: 1,
    archivedStreams: 0,
    archivedEvents: 0,
  });
  expect(status?.oldestUnackedAt).toBeInstanceOf(Date);
  expect(formatStatusTable(status ? [status] : [])).toMatch(
    new RegExp(`${view}\\s+3\\s+2\\s+1\\s+1\\s+6\\s+\\S+ ago\\s+1\\s+-$`),
  );
});

test('`fstore status` prints a table of every view of DATABASE_URL', async () => {
  const view = `view-${randomUUID()}`;
  await registerView(db, view);
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
  const run = (args: string[], env: NodeJS.ProcessEnv) =>
    promisify(execFile)(process.execPath, ['--conditions=@fstore/source', '--import', tsx, cli, ...args], {
      env: { ...process.env, ...env },
    });
  const { stdout } = await run(['status'], { DATABASE_URL: database.url });
  const [header, rule, ...rows] = stdout.trim().split('\n');
  expect(header).toMatch(
    /^view\s+streams\s+pending\s+leased\s+stopped\s+events behind\s+oldest unacked\s+parked\s+archived$/,
  );
  expect(rule).toMatch(/^-+( +-+)+$/);
  expect(rows.some((row) => row.startsWith(view))).toBe(true);
  const missing = await run(['status'], { DATABASE_URL: '' }).catch((error) => error);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('set DATABASE_URL');
});

test('leasing and acknowledging read only pending streams, whatever the number of streams', async () => {
  const view = `view-${randomUUID()}`;
  await registerView(db, view);
  await database.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'Noted', gen_random_uuid(), 'Note', 'plan-' || i, '{"n": 1}', gen_random_uuid(), NULL
    FROM generate_series(1, 20005) AS i`;
  // Appends write only the event: the lock rows appear when the view's frontier passes them, here in one call.
  const [before] = await database.sql`SELECT count(*)::int AS n FROM locks WHERE view = ${view}`;
  expect(before?.n).toBe(0);
  const [advanced] = await database.sql`SELECT advance_view(${view}, 30000) AS passed`;
  expect(advanced?.passed).toBe(20005);
  await database.sql`UPDATE locks SET last_offset = "offset" WHERE view = ${view} AND decider_id NOT IN ('plan-1', 'plan-2', 'plan-3', 'plan-4', 'plan-5')`;
  await database.sql`ANALYZE locks`;
  const plans: string[] = [];
  const explained = database.connect({
    max: 1,
    onnotice: (notice) =>
      void (String(notice.message).includes('Query Text') && plans.push(String(notice.message))),
  });
  for (const setting of [
    "LOAD 'auto_explain'",
    'SET auto_explain.log_min_duration = 0',
    'SET auto_explain.log_analyze = on',
    'SET auto_explain.log_nested_statements = on',
    'SET client_min_messages = log',
  ]) {
    await explained.unsafe(setting);
  }
  const explainedDb = drizzle(explained);
  let leasedStreams = 0;
  for (let call = 0; call < 7; call++) {
    const leased = await leaseEvents(explainedDb, view, {
      streams: 10,
      eventsPerStream: 100,
      leaseSeconds: 60,
    });
    for (const id of new Set(leased.map((e) => e.deciderId))) {
      const rows = leased.filter((e) => e.deciderId === id);
      await ackEvents(
        explainedDb,
        { view, deciderId: id, leaseId: rows[0]?.leaseId ?? '' },
        rows.at(-1)?.offset ?? 0,
      );
      leasedStreams++;
    }
  }
  expect(leasedStreams).toBe(5);
  const leasing = plans.filter((plan) => plan.includes('WITH candidates'));
  expect(leasing.length).toBeGreaterThanOrEqual(7);
  for (const plan of leasing) {
    expect(plan).toContain('Index Scan using locks_pending_idx on locks');
    expect(plan).not.toMatch(/Seq Scan on locks|Bitmap Heap Scan on locks/);
  }
  const acking = plans.filter((plan) => plan.includes('UPDATE locks l') && plan.includes('v_release'));
  expect(acking.length).toBe(5);
  for (const plan of acking) expect(plan).toContain('Index Scan using locks_pkey on locks');
});
