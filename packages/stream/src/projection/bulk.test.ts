/**
 * Many small streams in bulk, against a real PostgreSQL: a backlog of one-event streams costs a lease, a transaction
 * and an acknowledgement per many streams, not per stream, while every event is still handled exactly once. The
 * statements are counted as the workers' pool sends them.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { listParkedEvents, registerView } from '../functions.js';
import { createProjection } from '../projection.js';
import { leaseSizing, maxStreamsPerLease } from './lease-sizing.js';
import type { Projection, ProjectionOptions } from './types.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 4 }));

/** Every statement the workers' pool sends, with its parameters. */
const sent: { query: string; parameters: readonly unknown[] }[] = [];
const workerDb: Database = drizzle(
  database.connect({ max: 8, debug: (_connection, query, parameters) => sent.push({ query, parameters }) }),
);
/** The statements sent that call the SQL function `name`. */
const calls = (name: string) => sent.filter((statement) => statement.query.includes(`${name}(`));
/** The batch transactions: each starts by marking itself for its acknowledgement (set_config). */
const batchTransactions = () => calls('set_config').length;

const tasks = defineEvents('Task', {
  TaskAdded: event<{ title: string }>(),
  TaskDone: event<{ by: string }>(),
});
const store = createEventStore(db, tasks);

beforeAll(async () => {
  await store.register();
  await db.execute(
    sql`CREATE TABLE projected (view text NOT NULL, decider_id text NOT NULL, "offset" bigint NOT NULL)`,
  );
});

const running: Projection[] = [];
beforeEach(() => {
  sent.length = 0;
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});

type Options = ProjectionOptions<[typeof tasks]>;
function project(view: string, options: Partial<Options> = {}): Projection {
  const projection = createProjection({
    db: workerDb,
    view,
    events: [tasks],
    pollIntervalMs: 50,
    leaseSeconds: 5,
    wakeups: false,
    // Leases in bulk, measured here; log batches, which take new streams without leases, have their own file.
    logBatches: false,
    backoff: { initialMs: 20, maxMs: 100 },
    async handle(e, tx) {
      await tx.execute(
        sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
      );
    },
    ...options,
  });
  running.push(projection);
  return projection;
}

/** A view registered now: it reads only the streams appended after it. */
async function newView(): Promise<string> {
  const view = `view-${randomUUID()}`;
  await registerView(db, view);
  return view;
}

/** `count` new streams of one event each, in one statement; returns each stream's offset, in append order. */
async function appendOneEventStreams(count: number): Promise<Map<string, number>> {
  const prefix = `task-${randomUUID()}`;
  const rows = (await db.execute(sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'TaskAdded', gen_random_uuid(), 'Task', ${prefix} || '-' || s, jsonb_build_object('title', 't' || s),
           gen_random_uuid(), NULL
    FROM generate_series(1, ${count}::int) AS s
    RETURNING decider_id, "offset"`)) as unknown as { decider_id: string; offset: string }[];
  return new Map(rows.map((row) => [row.decider_id, Number(row.offset)]));
}

async function readModel(view: string): Promise<Map<string, number[]>> {
  const rows = (await db.execute(
    sql`SELECT decider_id, "offset" FROM projected WHERE view = ${view} ORDER BY "offset"`,
  )) as unknown as { decider_id: string; offset: string }[];
  const model = new Map<string, number[]>();
  for (const row of rows)
    model.set(row.decider_id, [...(model.get(row.decider_id) ?? []), Number(row.offset)]);
  return model;
}

async function until(condition: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
const handled = async (view: string) => [...(await readModel(view)).values()].flat().length;
/** The streams each lease_events statement asked for. */
const streamsAsked = () => calls('lease_events').map((statement) => Number(statement.parameters[1]));

describe('small streams in bulk', () => {
  test('500 one-event streams are handled exactly once with a handful of leases, transactions and acknowledgements', async () => {
    const view = await newView();
    const appended = await appendOneEventStreams(500);
    const projection = project(view, { concurrency: 4 });
    await projection.start();
    await until(async () => (await handled(view)) === 500);
    await projection.stop();

    const model = await readModel(view);
    expect(model.size).toBe(500);
    for (const [id, offset] of appended) expect(model.get(id)).toEqual([offset]);
    // Twenty streams a transaction (the default streamsPerTransaction) would take 25 transactions and
    // acknowledgements, and one per stream 500. Bulk leases take about a dozen, however the polls fall: a poll deals
    // its streams into at most as many transactions as it has free slots, and the lease sizes grow to 256. (How many
    // polls come back empty while the last batches run depends on the machine's speed: not counted.)
    const acknowledgements = calls('ack_leases').length + calls('ack_events').length;
    expect(acknowledgements).toBeLessThanOrEqual(20);
    expect(batchTransactions()).toBeLessThanOrEqual(20);
    // While the streams came back small and full, each poll asked for more, up to the ceiling.
    expect(Math.max(...streamsAsked())).toBeGreaterThan(4 * 20);
    expect(Math.max(...streamsAsked())).toBeLessThanOrEqual(maxStreamsPerLease);
  });

  test('streams that fill their batches are leased as before: streamsPerTransaction per free slot, each in order', async () => {
    const view = await newView();
    const appended = new Map<string, number[]>();
    for (let s = 0; s < 6; s++) {
      const id = `task-${randomUUID()}`;
      const stored = await store.append(
        id,
        Array.from({ length: 120 }, (_, i) =>
          i === 0
            ? { type: 'TaskAdded' as const, data: { title: `t${s}` } }
            : { type: 'TaskDone' as const, data: { by: `p${i}` } },
        ),
        { expectedLastEventId: null },
      );
      appended.set(
        id,
        stored.map((e) => e.offset),
      );
    }
    const projection = project(view, { concurrency: 2, batchSize: 40, streamsPerTransaction: 3 });
    await projection.start();
    await until(async () => (await handled(view)) === 6 * 120);
    await projection.stop();

    expect(await readModel(view)).toEqual(appended);
    expect(Math.max(...streamsAsked())).toBeLessThanOrEqual(2 * 3);
  });

  test('a handler failing in a group of small streams sends only its own stream back alone; the others commit together', async () => {
    const view = await newView();
    const appended = await appendOneEventStreams(100);
    const poison = [...appended.values()][4] as number;
    let failures = 0;
    const projection = project(view, {
      concurrency: 1,
      maxAttempts: 2,
      async handle(e, tx) {
        if (e.offset === poison) {
          failures++;
          throw new Error('poison');
        }
        await tx.execute(
          sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
        );
      },
    });
    await projection.start();
    await until(async () => (await handled(view)) === 99 && (await listParkedEvents(db, view)).length === 1);
    await projection.stop();

    const model = await readModel(view);
    for (const [id, offset] of appended)
      expect(model.get(id)).toEqual(offset === poison ? undefined : [offset]);
    expect((await listParkedEvents(db, view))[0]?.offset).toBe(poison);
    expect(failures).toBe(3); // in its group, then alone twice (maxAttempts 2)
    // The poison's group is redone as one group without it, not as twenty transactions of one stream each.
    expect(calls('ack_events').length).toBeLessThanOrEqual(2);
    expect(calls('ack_leases').length + calls('ack_events').length).toBeLessThanOrEqual(10);
  });

  test("a group's leases are renewed together, one statement per renewal, and none is lost", async () => {
    const view = await newView();
    const appended = await appendOneEventStreams(30);
    const projection = project(view, {
      concurrency: 1,
      streamsPerTransaction: 30,
      leaseSeconds: 2, // renewed every 667 ms; the group takes about 1.8 s
      async handle(e, tx) {
        await new Promise((resolve) => setTimeout(resolve, 60));
        await tx.execute(
          sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
        );
      },
    });
    await projection.start();
    await until(async () => (await handled(view)) === 30);
    await projection.stop();

    const model = await readModel(view);
    for (const [id, offset] of appended) expect(model.get(id)).toEqual([offset]);
    expect(projection.stats.leaseLost).toBe(0);
    const renewals = calls('renew_lease');
    expect(renewals.length).toBeGreaterThanOrEqual(1);
    expect(renewals.length).toBeLessThanOrEqual(6); // one per stream would be 30 a renewal
    for (const renewal of renewals) expect(JSON.parse(String(renewal.parameters[0]))).toHaveLength(30);
  });
});

describe('a backlog', () => {
  test('a worker alone on a view reads the log into lock rows beside its leases, and handles each event once', async () => {
    const view = await newView();
    // More than the first lease advances (80 streams of up to 100 events: 8,000), so the advancer has work.
    const appended = await appendOneEventStreams(12_000);
    const projection = project(view, { concurrency: 4, handle() {} });
    await projection.start();
    await until(async () => projection.stats.handled >= appended.size, 60_000);
    await projection.stop();

    expect(projection.stats.handled).toBe(appended.size);
    const [status] = (await db.execute(
      sql`SELECT count(*)::int AS pending FROM locks WHERE view = ${view} AND last_offset < "offset"`,
    )) as unknown as { pending: number }[];
    expect(status?.pending).toBe(0);
    // advance_view on its own, not only inside lease_events.
    expect(
      calls('advance_view').filter((statement) => !statement.query.includes('lease_events(')),
    ).not.toHaveLength(0);
  });
});

describe('lease sizing', () => {
  const sizing = () => leaseSizing({ streamsPerTransaction: 20, batchSize: 100 });

  test('asks for streamsPerTransaction per free slot at first, and again once streams come back big', () => {
    const sized = sizing();
    expect(sized.streams(4)).toBe(80);
    sized.observe(80, 80, 80);
    expect(sized.streams(1)).toBe(40);
    sized.observe(40, 40, 4000);
    expect(sized.streams(1)).toBe(20);
  });

  test('doubles while leases come back full of small streams, up to the ceiling', () => {
    const sized = sizing();
    let asked = sized.streams(1);
    for (let poll = 0; poll < 10; poll++) {
      sized.observe(asked, asked, asked * 2);
      asked = sized.streams(1);
    }
    expect(asked).toBe(maxStreamsPerLease);
    expect(sized.streams(4)).toBe(maxStreamsPerLease);
  });

  test('a lease that is not full (the backlog is drained) does not grow it; more slots still ask for more', () => {
    const sized = sizing();
    sized.observe(20, 5, 5);
    expect(sized.streams(1)).toBe(20);
    expect(sized.streams(3)).toBe(60);
  });
});
