/**
 * waitForView: a writer waits until a view has handled its event, then reads the read model and finds its write.
 * Against a real PostgreSQL and real projection workers: many waiters at once, a worker whose lease expires, a
 * parked event, a view rebuilt during the wait, and the waiters' connection cut.
 */
import { randomUUID } from 'node:crypto';
import {
  createCommandHandler,
  createEventStore,
  type Database,
  type Decider,
  defineEvents,
  type EventOf,
  event,
  positionAfter,
  type StreamPosition,
} from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { EventParkedError, type ViewPositionError, ViewWaitTimeoutError } from './errors.js';
import { registerView } from './functions.js';
import { createProjection, type Projection, type ProjectionOptions } from './projection.js';
import { waitForView } from './read-your-writes.js';
import { rebuildProjection } from './rebuild.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 4 }));
// The waiters' own pool, named so that a test can cut exactly its connections.
const waiterDb: Database = drizzle(
  database.connect({ max: 2, connection: { application_name: 'view-waiters' } }),
);

const notes = defineEvents('Note', {
  NoteWritten: event<{ text: string }>(),
  NoteRejected: event<{ text: string }>(),
});
const store = createEventStore(db, notes);
beforeAll(async () => {
  await store.register();
  await db.execute(sql`CREATE TABLE noted (view text, decider_id text, text text)`);
});

const running: Projection[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});

function project(view: string, options: Partial<ProjectionOptions<[typeof notes]>> = {}): Projection {
  const projection = createProjection({
    db,
    view,
    events: [notes],
    startAt: new Date(0),
    pollIntervalMs: 50,
    leaseSeconds: 5,
    backoff: { initialMs: 10, maxMs: 50 },
    async handle(e, tx) {
      await tx.execute(sql`INSERT INTO noted VALUES (${view}, ${e.deciderId}, ${e.data.text})`);
    },
    ...options,
  });
  running.push(projection);
  return projection;
}

async function write(text: string, id = `note-${randomUUID()}`): Promise<StreamPosition> {
  const last = await store.loadLast(id);
  const stored = await store.append(id, [{ type: 'NoteWritten', data: { text } }], {
    expectedLastEventId: last?.eventId ?? null,
  });
  return positionAfter(stored) as StreamPosition;
}

const readModel = async (view: string, id: string) =>
  (
    (await db.execute(
      sql`SELECT text FROM noted WHERE view = ${view} AND decider_id = ${id}`,
    )) as unknown as {
      text: string;
    }[]
  ).map((row) => row.text);

test('after a command, the wait resolves once the read model holds the command’s write', async () => {
  const view = `notes-${randomUUID()}`;
  await project(view).start();
  const decider: Decider<{ text: string }, null, EventOf<typeof notes>> = {
    initialState: null,
    decide: (command) => [{ type: 'NoteWritten', data: { text: command.text } }],
    evolve: (state) => state,
  };
  const handled = await createCommandHandler(store, decider)(`note-${randomUUID()}`, { text: 'hello' });
  await waitForView(waiterDb, view, handled.position as StreamPosition);
  expect(await readModel(view, handled.position?.deciderId as string)).toEqual(['hello']);
});

test('two hundred waiters at once, on as many streams: each resolves once its event is in the read model', async () => {
  const view = `many-${randomUUID()}`;
  await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
  const positions = await Promise.all(Array.from({ length: 200 }, (_, i) => write(`n${i}`)));
  const seen: string[][] = [];
  const waits = positions.map(async (position) => {
    await waitForView(waiterDb, view, position, { timeoutMs: 60_000 });
    seen.push(await readModel(view, position.deciderId));
  });
  await project(view, { concurrency: 4 }).start();
  await Promise.all(waits);
  expect(seen).toHaveLength(200);
  for (const texts of seen) expect(texts).toHaveLength(1);
});

test('a consumer that leased the event and died: the wait resolves once a worker has handled it after the lease expired', async () => {
  const view = `expired-${randomUUID()}`;
  const position = await write('orphaned');
  await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
  // Leased for a second by a consumer that never acknowledges nor renews (it died).
  const leased = (await db.execute(
    sql`SELECT decider_id FROM lease_events(${view}, 1000, 100, 1)`,
  )) as unknown as { decider_id: string }[];
  expect(leased.map((row) => row.decider_id)).toContain(position.deciderId);
  const waiting = waitForView(waiterDb, view, position, { timeoutMs: 30_000 });
  await project(view, { logBatches: false }).start();
  await waiting;
  expect(await readModel(view, position.deciderId)).toEqual(['orphaned']);
});

test('a parked event fails the wait, naming it, instead of running to the timeout', async () => {
  const view = `parked-${randomUUID()}`;
  const position = await write('poison');
  await project(view, {
    maxAttempts: 1,
    handle() {
      throw new Error('cannot project this');
    },
  }).start();
  const started = Date.now();
  const failure = await waitForView(waiterDb, view, position, { timeoutMs: 60_000 }).catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(EventParkedError);
  expect(failure).toMatchObject({ view, deciderId: position.deciderId, parkedOffset: position.offset });
  expect((failure as EventParkedError).parkedError).toContain('cannot project this');
  expect(Date.now() - started).toBeLessThan(60_000);
});

test('a view rebuilt during the wait: it resolves once the rebuild has handled the event again', async () => {
  const view = `rebuilt-${randomUUID()}`;
  const position = await write('before');
  await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
  const waiting = waitForView(waiterDb, view, position, { timeoutMs: 30_000 });
  await rebuildProjection(db, {
    view,
    reset: async (tx) => {
      await tx.execute(sql`DELETE FROM noted WHERE view = ${view}`);
    },
  });
  let settled = false;
  void waiting.then(() => {
    settled = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(settled).toBe(false);
  await project(view).start();
  await waiting;
  expect(await readModel(view, position.deciderId)).toEqual(['before']);
});

test('the waiters’ connections cut before and during the wait: it reconnects and resolves', async () => {
  const view = `cut-${randomUUID()}`;
  const position = await write('through');
  await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
  const cutWaiters = async () => {
    const cut = (await db.execute(
      sql`SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'view-waiters'`,
    )) as unknown as { n: number }[];
    return cut[0]?.n ?? 0;
  };
  // Before: the first look may run on a connection the pool does not know is gone yet.
  await waitForView(waiterDb, view, position, { timeoutMs: 50 }).catch(() => {});
  expect(await cutWaiters()).toBeGreaterThan(0);
  const waiting = waitForView(waiterDb, view, position, { timeoutMs: 30_000 });
  // During: once the wait has a connection again (on a slow machine that takes longer than any fixed pause).
  const deadline = Date.now() + budget(20_000);
  let cut = 0;
  while (cut === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    cut = await cutWaiters();
  }
  expect(cut).toBeGreaterThan(0);
  await project(view).start();
  await waiting;
  expect(await readModel(view, position.deciderId)).toEqual(['through']);
});

describe('waits that cannot end are errors', () => {
  test('a timeout, a view that does not exist, an offset that is not the stream’s, a decider the view does not read', async () => {
    const view = `idle-${randomUUID()}`;
    const position = await write('waits');
    await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
    expect(
      await waitForView(waiterDb, view, position, { timeoutMs: 50 }).catch((e: unknown) => e),
    ).toBeInstanceOf(ViewWaitTimeoutError);
    const reasons = await Promise.all(
      [
        waitForView(waiterDb, 'no-such-view', position),
        waitForView(waiterDb, view, { deciderId: 'elsewhere', offset: position.offset }),
        (async () => {
          const other = `other-${randomUUID()}`;
          await registerView(db, other, { startAt: new Date(0), deciders: ['SomethingElse'] });
          return waitForView(waiterDb, other, position);
        })(),
      ].map((wait) =>
        wait.then(
          () => undefined,
          (e: unknown) => (e as ViewPositionError).reason,
        ),
      ),
    );
    expect(reasons).toEqual(['no-view', 'no-event', 'not-subscribed']);
  });

  test('an aborted signal rejects the wait with its reason', async () => {
    const view = `aborted-${randomUUID()}`;
    const position = await write('abort');
    await registerView(db, view, { startAt: new Date(0), deciders: ['Note'] });
    const controller = new AbortController();
    const waiting = waitForView(waiterDb, view, position, { signal: controller.signal });
    controller.abort(new Error('the request went away'));
    await expect(waiting).rejects.toThrow('the request went away');
  });
});
