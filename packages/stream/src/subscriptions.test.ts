/**
 * Views subscribe to what they project: a projection's view subscribes to the deciders it declares, streams of
 * other deciders get no lock row and never reach it; a worker refuses a view that misses one of its deciders;
 * changing the subscription is a rebuild; a view may also subscribe to some event types only.
 */
import { randomUUID } from 'node:crypto';
import { views } from '@fstore/schema';
import { createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { SubscriptionMismatchError } from './errors.js';
import { registerView, viewStatus } from './functions.js';
import type { Logger } from './observability.js';
import { createProjection, type Projection } from './projection.js';
import { rebuildProjection } from './rebuild.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 4 }));
const workerDb: Database = drizzle(database.connect({ max: 8 }));

const tasks = defineEvents('Task', {
  TaskAdded: event<{ title: string }>(),
  TaskDone: event<{ by: string }>(),
});
const notes = defineEvents('Note', { Noted: event<{ text: string }>() });
const others = defineEvents('Other', { Happened: event<object>() });
const taskStore = createEventStore(db, tasks);
const noteStore = createEventStore(db, notes);
const otherStore = createEventStore(db, others);

beforeAll(async () => {
  await Promise.all([taskStore.register(), noteStore.register(), otherStore.register()]);
  await db.execute(
    sql`CREATE TABLE projected (seq bigserial, view text NOT NULL, decider_id text NOT NULL, "offset" bigint NOT NULL, type text NOT NULL)`,
  );
});

const running: Projection[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});

/** A worker that writes every event it is handed to `projected`, declaring the given deciders. */
function project<T extends readonly (typeof tasks | typeof notes)[]>(
  view: string,
  events: T,
  logger?: Logger,
  logBatches = true,
): Projection {
  const projection = createProjection({
    db: workerDb,
    view,
    events,
    logger,
    logBatches,
    pollIntervalMs: 50,
    leaseSeconds: 5,
    wakeups: false,
    backoff: { initialMs: 20, maxMs: 100 },
    async handle(e, tx) {
      await tx.execute(
        sql`INSERT INTO projected (view, decider_id, "offset", type) VALUES (${view}, ${e.deciderId}, ${e.offset}, ${e.type})`,
      );
    },
  });
  running.push(projection);
  return projection;
}

/** One new stream of each decider: a task (added, done), a note, and one of a decider no worker declares. */
async function appendOneOfEach() {
  const task = `task-${randomUUID()}`;
  const note = `note-${randomUUID()}`;
  const other = `other-${randomUUID()}`;
  const taskEvents = await taskStore.append(
    task,
    [
      { type: 'TaskAdded', data: { title: 't' } },
      { type: 'TaskDone', data: { by: 'p' } },
    ],
    { expectedLastEventId: null },
  );
  const noteEvents = await noteStore.append(note, [{ type: 'Noted', data: { text: 'n' } }], {
    expectedLastEventId: null,
  });
  const otherEvents = await otherStore.append(other, [{ type: 'Happened', data: {} }], {
    expectedLastEventId: null,
  });
  return {
    task,
    note,
    other,
    offsets: {
      task: taskEvents.map((e) => e.offset),
      note: noteEvents.map((e) => e.offset),
      other: otherEvents.map((e) => e.offset),
    },
  };
}

/** Every row the view's handler wrote: [stream, offset, type], in the order written. */
async function readModel(view: string): Promise<[string, number, string][]> {
  const rows = (await db.execute(
    sql`SELECT decider_id, "offset", type FROM projected WHERE view = ${view} ORDER BY seq`,
  )) as unknown as { decider_id: string; offset: string; type: string }[];
  return rows.map((row) => [row.decider_id, Number(row.offset), row.type]);
}

async function lockedStreams(view: string): Promise<string[]> {
  const rows = await database.sql`SELECT decider_id FROM locks WHERE view = ${view} ORDER BY decider_id`;
  return rows.map((row) => String(row.decider_id));
}

async function until(condition: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
const status = async (view: string) => (await viewStatus(db)).find((s) => s.view === view);
const caughtUp = async (view: string) => {
  const s = await status(view);
  return s !== undefined && s.eventsBehind === 0 && s.pendingStreams === 0;
};

describe('a projection subscribes its view to the deciders it declares', () => {
  test('createProjection registers the view with its deciders; events of other deciders get no lock row and are not handled', async () => {
    const view = `view-${randomUUID()}`;
    // On leases, whose lock rows show which streams the view took (log batches write none for streams taken whole).
    const projection = project(view, [tasks, notes], undefined, false);
    await projection.start();
    const [registered] = await db
      .select({ deciders: views.subscribedDeciders, events: views.subscribedEvents })
      .from(views)
      .where(eq(views.view, view));
    expect(registered).toEqual({ deciders: ['Note', 'Task'], events: null });
    expect(await status(view)).toMatchObject({
      subscribedDeciders: ['Note', 'Task'],
      subscribedEvents: null,
    });

    const appended = await appendOneOfEach();
    await until(async () => (await readModel(view)).filter(([id]) => id === appended.note).length === 1);
    await until(async () => (await readModel(view)).filter(([id]) => id === appended.task).length === 2);
    await until(() => caughtUp(view));
    const model = (await readModel(view))
      .filter(([id]) => [appended.task, appended.note, appended.other].includes(id))
      .sort(([, a], [, b]) => a - b);
    expect(model).toEqual([
      [appended.task, appended.offsets.task[0], 'TaskAdded'],
      [appended.task, appended.offsets.task[1], 'TaskDone'],
      [appended.note, appended.offsets.note[0], 'Noted'],
    ]);
    // The frontier has passed every event of the log (the other decider's too), and that stream has no lock row.
    await database.sql`SELECT advance_view(${view})`;
    const [past] = await database.sql`
      SELECT count(*)::int AS n FROM events e, view_frontiers f
      WHERE f.view = ${view} AND (e.transaction_id, e."offset") > (f.transaction_id, f."offset")`;
    expect(past?.n).toBe(0);
    const locked = await lockedStreams(view);
    expect(locked).toEqual(expect.arrayContaining([appended.task, appended.note]));
    expect(locked).not.toContain(appended.other);
  });

  test('a worker on an existing view that misses a declared decider does not start: SubscriptionMismatchError names it', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(db, view, { startAt: new Date(0), deciders: ['Task'] });
    const projection = project(view, [tasks, notes]);
    const failure = await projection.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(SubscriptionMismatchError);
    expect(failure).toMatchObject({
      name: 'SubscriptionMismatchError',
      view,
      subscribed: ['Task'],
      missing: ['Note'],
    });
    expect((failure as Error).message).toContain('Note');
    expect((failure as Error).message).toContain(view);
    // Nothing changed: the view still subscribes to what it did, and the worker leased nothing.
    expect(await status(view)).toMatchObject({ subscribedDeciders: ['Task'], streams: 0 });
    expect(projection.stats.polls).toBe(0);
  });

  test('two workers that declare different deciders, started at once on a new view: one registers it, the other is refused', async () => {
    // Twenty new views, each raced by two workers (a rolling deployment whose versions differ): the second to come
    // must never register the view again, which would rebuild it under the first.
    for (let round = 0; round < 20; round++) {
      const view = `view-${randomUUID()}`;
      const workers = [project(view, [tasks]), project(view, [notes])];
      const outcomes = await Promise.allSettled(workers.map((worker) => worker.start()));
      const refused = outcomes.flatMap((outcome) => (outcome.status === 'rejected' ? [outcome.reason] : []));
      expect(refused).toHaveLength(1);
      expect(refused[0]).toBeInstanceOf(SubscriptionMismatchError);
      // The view subscribes to what the worker that started declares.
      const winner = outcomes[0]?.status === 'fulfilled' ? ['Task'] : ['Note'];
      expect(await status(view)).toMatchObject({ subscribedDeciders: winner });
      await Promise.all(workers.map((worker) => worker.stop({ timeoutMs: 2000 })));
    }
  });

  test('an existing view that subscribes to more than the worker declares, or to everything, is accepted', async () => {
    const wider = `view-${randomUUID()}`;
    await registerView(db, wider, { deciders: ['Note', 'Task'] });
    const everything = `view-${randomUUID()}`;
    await registerView(db, everything);
    for (const view of [wider, everything]) {
      const projection = project(view, [tasks]);
      await projection.start();
      await projection.stop();
    }
    expect(await status(wider)).toMatchObject({ subscribedDeciders: ['Note', 'Task'] });
    expect(await status(everything)).toMatchObject({ subscribedDeciders: null });
  });
});

describe('changing the subscription is a rebuild', () => {
  test('rebuildProjection with deciders subscribes the view to them and replays it from the start, each event once', async () => {
    const view = `view-${randomUUID()}`;
    const since = new Date(Date.now() - 1000);
    const first = await appendOneOfEach();
    const tasksOnly = project(view, [tasks]);
    await tasksOnly.start();
    await until(async () => (await readModel(view)).filter(([id]) => id === first.task).length === 2);
    await until(() => caughtUp(view));
    expect((await readModel(view)).map(([id]) => id)).not.toContain(first.note);
    await tasksOnly.stop();

    // A worker that also declares notes is refused until the view is rebuilt with them.
    const both = project(view, [tasks, notes]);
    await expect(both.start()).rejects.toBeInstanceOf(SubscriptionMismatchError);

    // The reset runs in the rebuild's transaction: it sees the new subscription, and the view's rows are gone.
    let seenInReset: unknown;
    await rebuildProjection(db, {
      view,
      startAt: since,
      deciders: ['Task', 'Note'],
      reset: async (tx) => {
        const [row] = await tx
          .select({ deciders: views.subscribedDeciders })
          .from(views)
          .where(eq(views.view, view));
        const [locks] = (await tx.execute(
          sql`SELECT count(*)::int AS n FROM locks WHERE view = ${view}`,
        )) as unknown as { n: number }[];
        seenInReset = { deciders: row?.deciders, locks: locks?.n };
        await tx.execute(sql`DELETE FROM projected WHERE view = ${view}`);
      },
    });
    expect(seenInReset).toEqual({ deciders: ['Note', 'Task'], locks: 0 });
    expect(await status(view)).toMatchObject({ subscribedDeciders: ['Note', 'Task'], streams: 0 });

    const second = await appendOneOfEach();
    const replaying = project(view, [tasks, notes]);
    await replaying.start();
    const mine = async () =>
      (await readModel(view)).filter(([id]) =>
        [first.task, first.note, second.task, second.note].includes(id),
      );
    await until(async () => (await mine()).length === 6);
    await until(() => caughtUp(view));
    await new Promise((resolve) => setTimeout(resolve, 200)); // nothing more arrives
    const model = await readModel(view);
    const offsetsOf = (id: string) => model.filter(([stream]) => stream === id).map(([, offset]) => offset);
    // Every event of both deciders since `since`, each exactly once, each stream in order; none of the other's.
    expect(offsetsOf(first.task)).toEqual(first.offsets.task);
    expect(offsetsOf(first.note)).toEqual(first.offsets.note);
    expect(offsetsOf(second.task)).toEqual(second.offsets.task);
    expect(offsetsOf(second.note)).toEqual(second.offsets.note);
    expect(offsetsOf(first.other)).toEqual([]);
    expect(offsetsOf(second.other)).toEqual([]);
    const all = model.map(([, offset]) => offset);
    expect(new Set(all).size).toBe(all.length);
    expect(await lockedStreams(view)).not.toContain(first.other);
  });

  // Through a log batch, the note rolls back with the batch and gets no lock row; through a lease, its lock row
  // stays unacknowledged and unleased.
  test.each([
    ['a log batch', true],
    ['a lease', false],
  ])(
    'a rebuild that widens the subscription while an old worker runs: the old worker hands the new decider back (from %s) and stops, the new one handles it',
    async (_, logBatches) => {
      const view = `view-${randomUUID()}`;
      await registerView(db, view, { startAt: new Date(0), deciders: ['Task'] });
      await rebuildProjection(db, { view, deciders: ['Note', 'Task'], reset: async () => {} });
      const appended = await appendOneOfEach();
      const errors: string[] = [];
      const old = project(
        view,
        [tasks],
        {
          debug() {},
          info() {},
          warn() {},
          error: (message) => {
            errors.push(message);
          },
        },
        logBatches,
      );
      await old.start();
      await until(async () => errors.some((message) => message.includes('does not declare')));
      await old.stop();
      // The note was handed back, not acknowledged as if it were none of the view's business.
      expect((await readModel(view)).filter(([id]) => id === appended.note)).toEqual([]);
      const [noteLock] = await database.sql`
      SELECT last_offset, "offset", lease_id FROM locks WHERE view = ${view} AND decider_id = ${appended.note}`;
      if (logBatches) expect(noteLock).toBeUndefined();
      else expect(noteLock).toMatchObject({ last_offset: '0', lease_id: null });

      const fresh = project(view, [tasks, notes]);
      await fresh.start();
      await until(() => caughtUp(view));
      const model = await readModel(view);
      const offsetsOf = (id: string) => model.filter(([stream]) => stream === id).map(([, offset]) => offset);
      expect(offsetsOf(appended.note)).toEqual(appended.offsets.note);
      expect(offsetsOf(appended.task)).toEqual(appended.offsets.task);
      expect(offsetsOf(appended.other)).toEqual([]);
    },
  );

  test('a rebuild whose reset fails changes nothing: the subscription, the positions and the read model stay', async () => {
    const view = `view-${randomUUID()}`;
    const appended = await appendOneOfEach();
    const projection = project(view, [tasks]);
    await projection.start();
    await until(async () => (await readModel(view)).filter(([id]) => id === appended.task).length === 2);
    await until(() => caughtUp(view));
    await projection.stop();
    const before = { model: await readModel(view), locks: await lockedStreams(view) };

    const failure = await rebuildProjection(db, {
      view,
      deciders: ['Note', 'Task'],
      reset: async (tx) => {
        await tx.execute(sql`DELETE FROM projected WHERE view = ${view}`);
        throw new Error('reset failed');
      },
    }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ message: 'reset failed' });
    expect(await status(view)).toMatchObject({ subscribedDeciders: ['Task'], pendingStreams: 0 });
    expect(await readModel(view)).toEqual(before.model);
    expect(await lockedStreams(view)).toEqual(before.locks);
  });
});

describe('a view that subscribes to event types', () => {
  test('registerView with eventTypes delivers only those types', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(db, view, { startAt: new Date(0), deciders: ['Task'], eventTypes: ['TaskDone'] });
    expect(await status(view)).toMatchObject({
      subscribedDeciders: ['Task'],
      subscribedEvents: ['TaskDone'],
    });
    const appended = await appendOneOfEach();
    const projection = project(view, [tasks]);
    await projection.start();
    await until(async () => (await readModel(view)).some(([id]) => id === appended.task));
    await until(() => caughtUp(view));
    await new Promise((resolve) => setTimeout(resolve, 200)); // nothing more arrives
    const model = await readModel(view);
    expect(model.filter(([id]) => id === appended.task)).toEqual([
      [appended.task, appended.offsets.task[1], 'TaskDone'],
    ]);
    expect(model.map(([, , type]) => type).every((type) => type === 'TaskDone')).toBe(true);
    expect(await lockedStreams(view)).not.toContain(appended.note);
    expect(await lockedStreams(view)).not.toContain(appended.other);
  });
});
