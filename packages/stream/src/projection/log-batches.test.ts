/**
 * Log batches, against a real PostgreSQL: a worker behind on many new streams takes them straight from the log
 * (claim_log_batch), many streams in one transaction and no lease or acknowledgement per stream, while every event
 * is still handled exactly once and in order. A failing handler's events go through leases (retried, then parked);
 * a hung one is ended and stop() does not wait for it; batches grow only while they are quick; slow handlers pause
 * them; a rebuild waits for a batch.
 * The statements are counted as the workers' pool sends them.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { claimLogBatch, listParkedEvents, registerView } from '../functions.js';
import { silentLogger } from '../observability.js';
import { createProjection } from '../projection.js';
import { rebuildProjection } from '../rebuild.js';
import type { Projection, ProjectionOptions } from './types.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 4 }));

/** Every statement the workers' pool sends. */
const sent: string[] = [];
const workerDb: Database = drizzle(
  database.connect({ max: 8, debug: (_connection, query) => sent.push(query) }),
);
const calls = (name: string) => sent.filter((query) => query.includes(`${name}(`)).length;

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
/** A worker whose handler writes each event to `projected`, after `handlerDelayMs` (a slow handler) if given. */
function project(
  view: string,
  { handlerDelayMs = 0, ...options }: Partial<Options> & { handlerDelayMs?: number } = {},
): Projection {
  const projection = createProjection({
    db: workerDb,
    view,
    events: [tasks],
    pollIntervalMs: 50,
    leaseSeconds: 5,
    backoff: { initialMs: 20, maxMs: 100 },
    async handle(e, tx) {
      if (handlerDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, handlerDelayMs));
      await tx.execute(
        sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
      );
    },
    ...options,
  });
  running.push(projection);
  return projection;
}

async function newView(): Promise<string> {
  const view = `view-${randomUUID()}`;
  await registerView(db, view, { deciders: ['Task'] });
  return view;
}

/** `streams` new streams of `perStream` chained events each, appended in one statement per round, interleaved. */
async function appendStreams(streams: number, perStream: number): Promise<Map<string, number[]>> {
  const prefix = `task-${randomUUID()}`;
  const appended = new Map<string, number[]>();
  for (let round = 0; round < perStream; round++) {
    const rows = (await db.execute(sql`
      INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'TaskAdded', gen_random_uuid(), 'Task', ${prefix} || '-' || s, jsonb_build_object('title', 't'),
             gen_random_uuid(),
             (SELECT e.event_id FROM events e WHERE e.decider_id = ${prefix} || '-' || s ORDER BY e."offset" DESC LIMIT 1)
      FROM generate_series(1, ${streams}::int) AS s
      RETURNING decider_id, "offset"`)) as unknown as { decider_id: string; offset: string }[];
    for (const row of rows)
      appended.set(row.decider_id, [...(appended.get(row.decider_id) ?? []), Number(row.offset)]);
  }
  return appended;
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
const handled = async (view: string) => [...(await readModel(view)).values()].flat().length;

async function until(condition: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('a worker behind takes new streams from the log', () => {
  test('1,000 one-event streams: each handled once, in a few transactions, with no lease, acknowledgement or lock row', async () => {
    const view = await newView();
    const appended = await appendStreams(1000, 1);
    const paused: string[] = [];
    const record = (message: string) => {
      if (/handlers are slow|outlived its time limit/.test(message)) paused.push(message);
    };
    const projection = project(view, { logger: { ...silentLogger, info: record, warn: record } });
    await projection.start();
    await until(async () => (await handled(view)) === 1000);
    await projection.stop();
    expect(await readModel(view)).toEqual(appended);
    // A machine busy enough to make these handlers look slow (over 5 ms an event) pauses the batches, and leases
    // take the rest: correct, but not the path this test is about. Say so rather than fail.
    if (paused.length > 0) {
      console.log(`log batches paused on this busy machine (${paused.join('; ')}): the path is not checked`);
      return;
    }
    // Batches of 50 and then up to eight times more each: a handful of transactions, where leases took one per group.
    expect(calls('claim_log_batch')).toBeLessThanOrEqual(20);
    expect(calls('ack_leases') + calls('ack_events')).toBe(0);
    // Nor a lock row: streams taken whole are handled up to the frontier, which is all the view writes for them.
    const [locks] = (await db.execute(sql`
      SELECT count(*)::int AS streams FROM locks WHERE view = ${view}`)) as unknown as { streams: number }[];
    expect(locks).toEqual({ streams: 0 });
  });

  test('batches grow while they are quick: with handlers of 3 ms an event they stop at about half a second', async () => {
    const view = await newView();
    const appended = await appendStreams(1000, 1);
    // The sizes the worker asks claim_log_batch for, in order.
    const sizes: number[] = [];
    const sizedDb: Database = drizzle(
      database.connect({
        max: 4,
        debug: (_connection, query, parameters) => {
          if (query.includes('claim_log_batch(')) sizes.push(Number(parameters[1]));
        },
      }),
    );
    const projection = project(view, { db: sizedDb, handlerDelayMs: 3 });
    await projection.start();
    await until(async () => (await handled(view)) === 1000);
    await projection.stop();
    expect(await readModel(view)).toEqual(appended);
    // A batch grows only as far as fits in 500 ms: at 3 ms an event or more, 166 events. Grown by count alone, the
    // next batches would ask for 400 and 800. (A machine slow enough to pause batches asks for less, never more.)
    expect(sizes[0]).toBe(50);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(200);
  });

  test('a view that starts after a long log passes over it claim after claim, without a poll between them', async () => {
    await appendStreams(2000, 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Started after those events and before now: the view reads the log from its beginning, passing over them all.
    const view = `view-${randomUUID()}`;
    await registerView(db, view, { deciders: ['Task'], startAt: new Date(Date.now() - 25) });
    const appended = await appendStreams(1, 1);
    // Polls a minute apart and no wake-ups: a worker that waited a poll between claims with nothing for the view
    // (40 and more claims of 50 events here) would not get to the new event for minutes.
    const projection = project(view, { pollIntervalMs: 60_000, wakeups: 'off' });
    await projection.start();
    await until(async () => (await handled(view)) === 1);
    expect(await readModel(view)).toEqual(appended);
    expect(calls('claim_log_batch')).toBeGreaterThan(40);
  });

  test('three workers on one view with streams growing while they run: every event once, each stream in order', async () => {
    const view = await newView();
    const first = await appendStreams(200, 3);
    const workers = [project(view), project(view), project(view)];
    await Promise.all(workers.map((worker) => worker.start()));
    const second = await appendStreams(100, 5);
    await until(async () => (await handled(view)) === 200 * 3 + 100 * 5);
    expect(await readModel(view)).toEqual(new Map([...first, ...second]));
  });

  test('a worker that finds another consumer holding the frontier leaves it to that consumer for a second', async () => {
    const view = await newView();
    const appended = await appendStreams(3, 1);
    await db.transaction(async (holder) => {
      // Another consumer takes one event and holds the frontier; two wait past it.
      expect((await claimLogBatch(holder, view, 1)).events).toHaveLength(1);
      await project(view).start();
      await until(async () => calls('claim_log_batch') >= 1);
      // Polling every 50 ms, it would claim again and again; it leaves the frontier alone, and leases meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(calls('claim_log_batch')).toBe(1);
      expect(calls('lease_events')).toBeGreaterThan(1);
    });
    // The holder committed its event without handling it here: the worker takes the other two once its pause ends.
    await until(async () => (await handled(view)) === 2);
    expect([...(await readModel(view)).values()].flat().sort()).toEqual(
      [...appended.values()].flat().sort().slice(1),
    );
  });

  test('a stream the worker also holds a lease on keeps its order across the two paths', async () => {
    const view = await newView();
    // The first events reach lock rows (advance_view), so these streams go through leases; later ones are new.
    const leased = await appendStreams(20, 2);
    await db.execute(sql`SELECT advance_view(${view})`);
    const grown = await appendStreams(50, 2);
    const more = new Map<string, number[]>();
    for (const [id, offsets] of leased) {
      const [event] = await store.append(id, [{ type: 'TaskDone', data: { by: 'me' } }], {
        expectedLastEventId: (await store.load(id)).at(-1)?.eventId ?? null,
      });
      more.set(id, [...offsets, event?.offset as number]);
    }
    const projection = project(view);
    await projection.start();
    await until(async () => (await handled(view)) === 20 * 3 + 50 * 2);
    expect(await readModel(view)).toEqual(new Map([...more, ...grown]));
  });
});

describe('what a log batch does when things go wrong', () => {
  test('a failing handler: the batch rolls back, the event is retried through its lease and parked, the rest handled once', async () => {
    const view = await newView();
    const appended = await appendStreams(100, 1);
    const poison = [...appended.values()][37]?.[0] as number;
    let calledWithPoison = 0;
    const projection = project(view, {
      maxAttempts: 2,
      async handle(e, tx) {
        if (e.offset === poison) {
          calledWithPoison++;
          throw new Error('poison');
        }
        await tx.execute(
          sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
        );
      },
    });
    await projection.start();
    await until(async () => (await handled(view)) === 99 && (await listParkedEvents(db, view)).length === 1);
    const model = await readModel(view);
    for (const [id, offsets] of appended) if (offsets[0] !== poison) expect(model.get(id)).toEqual(offsets);
    // Once in the batch and, if its lease came in a group of streams, once in the group (neither counts as an
    // attempt), then the two attempts of its lease.
    expect(calledWithPoison).toBeGreaterThanOrEqual(3);
    expect(calledWithPoison).toBeLessThanOrEqual(4);
    expect((await listParkedEvents(db, view))[0]).toMatchObject({ offset: poison });
  });

  test('a hung handler: stop() ends the batch at once, and the next worker handles every event', async () => {
    const view = await newView();
    const appended = await appendStreams(10, 1);
    const hung = project(view, { handle: () => new Promise(() => {}) });
    await hung.start();
    await until(async () => calls('claim_log_batch') > 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stopped = Date.now();
    await hung.stop({ timeoutMs: 200 });
    const next = project(view);
    await next.start();
    await until(async () => (await handled(view)) === 10);
    expect(Date.now() - stopped).toBeLessThan(4000); // not the batch's time limit (5 s)
    expect(await readModel(view)).toEqual(appended);
  });

  test('a batch past its time limit is rolled back, and batches pause: leases handle its events, each once', async () => {
    const view = await newView();
    const appended = await appendStreams(8, 1);
    // 200 ms an event: 8 events outlive the batch's limit, the lease's 1 s.
    const warnings: { message: string; fields?: Record<string, unknown> }[] = [];
    const projection = project(view, {
      logger: { ...silentLogger, warn: (message, fields) => warnings.push({ message, fields }) },
      leaseSeconds: 1,
      concurrency: 4,
      handlerDelayMs: 200,
    });
    await projection.start();
    await until(async () => (await handled(view)) === 8);
    expect(await readModel(view)).toEqual(appended);
    expect(calls('claim_log_batch')).toBe(1);
    expect(calls('ack_leases') + calls('ack_events')).toBeGreaterThan(0);
    // Paused as slow handlers pause them (30 s), not for the few seconds after a handler's failure.
    const [outlived] = warnings.filter(({ message }) => message.includes('outlived its time limit'));
    expect(outlived?.fields?.pauseMs).toBeGreaterThan(25_000);
  });

  test('slow handlers pause log batches: the work goes to leases, which workers share', async () => {
    const view = await newView();
    const appended = await appendStreams(40, 1);
    const projection = project(view, { concurrency: 4, handlerDelayMs: 15 });
    await projection.start();
    await until(async () => (await handled(view)) === 40);
    expect(await readModel(view)).toEqual(appended);
    // The first batch (up to 50 events) showed handlers slower than 5 ms an event; no second one came.
    expect(calls('claim_log_batch')).toBe(1);
  });

  test('a rebuild waits for the batch in flight, then the view is replayed once', async () => {
    const view = await newView();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const since = new Date();
    const appended = await appendStreams(5, 2);
    let release: (() => void) | undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held = false;
    const projection = project(view, {
      async handle(e, tx) {
        await tx.execute(
          sql`INSERT INTO projected (view, decider_id, "offset") VALUES (${view}, ${e.deciderId}, ${e.offset})`,
        );
        if (!held) {
          held = true;
          await gate;
        }
      },
    });
    await projection.start();
    await until(async () => held);
    let rebuilt = false;
    const rebuilding = rebuildProjection(db, {
      view,
      startAt: since,
      reset: async (tx) => {
        await tx.execute(sql`DELETE FROM projected WHERE view = ${view}`);
      },
    }).then(() => {
      rebuilt = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(rebuilt).toBe(false); // the batch holds the view's frontier
    release?.();
    await rebuilding;
    await until(async () => (await handled(view)) === 10);
    expect(await readModel(view)).toEqual(appended);
  });
});
