/**
 * Scenarios with real worker processes (test-support/worker-process.ts) on a real PostgreSQL: two workers sharing a
 * view while streams are appended, a worker killed (SIGKILL) inside a handler, and workers killed at random moments
 * while busy. Each ends by checking the read model against the log: every event exactly once, every stream in
 * offset order. Each runs in a database of its own.
 */
import { createEventStore } from '@fstore/store';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterEach, beforeEach, expect, onTestFailed, test } from 'vitest';
import { produce } from './test-support/event-production.js';
import {
  caughtUp,
  describeView,
  inspectReadModel,
  type ReadModelReport,
  waitUntil,
} from './test-support/invariants.js';
import {
  startWorker,
  stopWorker,
  type WorkerOptions,
  type WorkerProcess,
  workerLogs,
} from './test-support/process-control.js';
import { counterEvents, createReadModel, sleep, streamIds } from './test-support/scenario-fixtures.js';

let workers: WorkerProcess[] = [];
let databases: TestDatabase[] = [];

// Emptied before each test, not after: onTestFailed runs after the afterEach hooks and prints these workers' logs.
beforeEach(() => {
  workers = [];
});
afterEach(async () => {
  for (const worker of workers) if (worker.alive) worker.child.kill('SIGKILL');
  await Promise.all(workers.map((worker) => worker.exited));
  await Promise.all(databases.map((database) => database.drop()));
  databases = [];
});

async function setUp() {
  const database = await createTestDatabase();
  databases.push(database);
  await createReadModel(database.sql);
  const store = createEventStore(drizzle(database.connect({ max: 10 })), counterEvents);
  await store.register();
  onTestFailed(() => {
    console.error(workerLogs(workers));
  });
  return { database, store };
}

function worker(options: WorkerOptions): WorkerProcess {
  const started = startWorker(options);
  workers.push(started);
  return started;
}

/** The invariants every scenario ends with, in one comparison so that a failure shows them all. */
function expectExactlyOnceInOrder(report: ReadModelReport, total: number) {
  expect({
    duplicates: report.duplicates,
    missing: report.missing,
    unknown: report.unknown,
    outOfOrder: report.outOfOrder,
  }).toEqual({ duplicates: [], missing: [], unknown: [], outOfOrder: [] });
  expect(report.rows).toHaveLength(total);
}

async function waitForCatchUp(database: TestDatabase, view: string, timeoutMs = 30_000) {
  await waitUntil(() => caughtUp(database.sql, view), {
    timeoutMs,
    what: `view ${view} to catch up`,
    explain: async () => `${await describeView(database.sql, view)}\n${workerLogs(workers)}`,
  });
}

// How workers share a view depends on the path. On leases, every worker leases streams: both take part. With log
// batches, the worker that holds the frontier takes the live tail alone while handlers are fast (the others stand by
// and take over if it dies); handlers slower than a few milliseconds an event pause batches, and leases share the
// work out. The handler delay puts the second variant on that side of the line, with room for a busy machine. Its
// backlog goes to leases all at once when batches pause: one stream a transaction and more streams than a lease's
// first reach (4 slots) leave work for the other worker, which polls often enough to find it.
test.each([
  {
    path: 'leases',
    logBatches: false,
    handlerDelayMs: 0,
    leaseSeconds: 2,
    streams: 40,
    streamsPerTransaction: 20,
  },
  // A 5 s lease gives a batch of slow handlers its full 5 s (min(5 s, the lease)) on a busy machine.
  {
    path: 'log batches with handlers of 10 ms an event',
    logBatches: true,
    handlerDelayMs: 10,
    leaseSeconds: 5,
    streams: 80,
    streamsPerTransaction: 1,
    pollIntervalMs: 50,
  },
])(
  'two worker processes share a view while $streams streams are appended at once, on $path: every event once, in order, both work',
  async ({ streams, ...tuning }) => {
    const { database, store } = await setUp();
    const view = tuning.logBatches ? 'shared-batches' : 'shared-leases';
    const options = { url: database.url, view, concurrency: 4, ...tuning };
    const pair = [worker({ ...options, name: 'w1' }), worker({ ...options, name: 'w2' })];
    await Promise.all(pair.map((started) => started.waitForLine(/^ready$/)));

    const produced = await produce(store, {
      streams: streamIds('shared', streams),
      eventsPerStream: 400 / streams,
      maxEventsPerAppend: 3,
      pauseMs: 20,
      deadline: Date.now() + 30_000,
    });
    const total = [...produced.acknowledged.values()].flat().length;
    expect(total).toBe(400);
    await waitForCatchUp(database, view);
    const exits = await Promise.all(pair.map((started) => stopWorker(started)));
    expect(exits, workerLogs(workers)).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);

    const report = await inspectReadModel(database.sql, view);
    expectExactlyOnceInOrder(report, total);
    expect(new Set(report.rows.map((row) => row.handledBy))).toEqual(new Set(['w1', 'w2']));
  },
);

test.each([
  { path: 'a lease', logBatches: false },
  { path: 'a log batch', logBatches: true },
])(
  'a worker killed with SIGKILL inside a handler, in $path: the other worker redelivers what it had not committed, nothing twice',
  async ({ logBatches }) => {
    const { database, store } = await setUp();
    const view = `killed-in-handler-${logBatches ? 'batch' : 'lease'}`;
    // A hung log batch is ended after min(5 s, the lease): a 5 s lease there leaves time to look at it hanging.
    const leaseSeconds = logBatches ? 5 : 2;
    const first = await produce(store, {
      streams: streamIds('before', 20),
      eventsPerStream: 10,
      maxEventsPerAppend: 3,
      deadline: Date.now() + 30_000,
    });
    // The 6th event of one stream: the worker handles the stream's first five in the same transaction, then hangs.
    const [hang] = await database.sql<{ offset: string }[]>`
    SELECT "offset" FROM events WHERE decider_id = 'before-07' ORDER BY "offset" OFFSET 5 LIMIT 1`;
    const hangAt = Number(hang?.offset);
    const streamOffsets = (
      await database.sql<{ offset: string }[]>`SELECT "offset" FROM events WHERE decider_id = 'before-07'`
    ).map((row) => Number(row.offset));
    const before = streamOffsets.filter((offset) => offset < hangAt);

    const doomed = worker({
      url: database.url,
      view,
      name: 'doomed',
      leaseSeconds,
      hangAtOffset: hangAt,
      logBatches,
    });
    await doomed.waitForLine(new RegExp(`^hanging ${hangAt}$`));
    // It did handle the events before (in the transaction that is now stuck, or for a log batch maybe in earlier ones).
    for (const offset of before)
      await doomed.waitForLine(new RegExp(`^handled ${offset}$`), { timeoutMs: 1000 });
    // The path it hung in: a lease shows in the stream's lock row; a log batch leaves none. With log batches on, a
    // busy machine can make the handlers look slow (batches pause) and the hang come in a lease: the invariants
    // below hold either way, and the log says which it was.
    const [lock] = await database.sql<{ lease_id: string | null }[]>`
      SELECT lease_id FROM locks WHERE view = ${view} AND decider_id = 'before-07'`;
    const hungIn = lock?.lease_id == null ? 'a log batch' : 'a lease';
    console.log(`logBatches ${logBatches}: the worker hung in ${hungIn}`);
    if (!logBatches) expect(hungIn).toBe('a lease');

    const survivor = worker({ url: database.url, view, name: 'survivor', leaseSeconds, logBatches });
    await survivor.waitForLine(/^ready$/);
    // More streams arrive meanwhile; the survivor takes them, and the kill lands in the middle of it.
    const more = produce(store, {
      streams: streamIds('after', 10),
      eventsPerStream: 10,
      pauseMs: 30,
      deadline: Date.now() + 30_000,
    });
    await sleep(300);
    const killedAt = Date.now();
    process.kill(doomed.pid, 'SIGKILL');
    expect(await doomed.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await survivor.waitForLine(new RegExp(`^handled ${hangAt}$`), { timeoutMs: 20_000 });
    const redeliveredAfterMs = Date.now() - killedAt;

    const second = await more;
    const total = [...first.acknowledged.values(), ...second.acknowledged.values()].flat().length;
    await waitForCatchUp(database, view);
    expect(await stopWorker(survivor), workerLogs(workers)).toEqual({ code: 0, signal: null });

    const report = await inspectReadModel(database.sql, view);
    expectExactlyOnceInOrder(report, total);
    const stream = report.rows.filter((row) => row.deciderId === 'before-07');
    expect(stream.map((row) => row.offset)).toEqual([...streamOffsets].sort((a, b) => a - b));
    // The stuck transaction never committed: the survivor wrote the event it hung on and what followed.
    expect(stream.filter((row) => row.offset >= hangAt).map((row) => row.handledBy)).toEqual(
      streamOffsets.filter((offset) => offset >= hangAt).map(() => 'survivor'),
    );
    if (logBatches) {
      // Earlier batches, committed before the hang, may hold the stream's first events; the survivor took the rest
      // within the batch's time limit (min(5 s, the lease)) of the hang, or as soon as the kill ended the session.
      expect(redeliveredAfterMs).toBeLessThan(leaseSeconds * 1000 + 10_000);
    } else {
      // A lease hands a stream over whole: the events before the hang were in the stuck transaction too.
      expect(new Set(stream.map((row) => row.handledBy))).toEqual(new Set(['survivor']));
      // Not before the lease could have expired (renewed up to the kill), and not long after.
      expect(redeliveredAfterMs).toBeGreaterThan(leaseSeconds * 1000 * (2 / 3) - 250);
      expect(redeliveredAfterMs).toBeLessThan(leaseSeconds * 1000 + 10_000);
    }
  },
);

test('workers killed with SIGKILL at random moments while busy, three times, replaced each time: every event once, in order', async () => {
  const { database, store } = await setUp();
  const view = 'random-kills';
  const options = {
    url: database.url,
    view,
    leaseSeconds: 2,
    batchSize: 3,
    concurrency: 3,
    handlerDelayMs: 5,
  };
  let next = 1;
  const start = () => worker({ ...options, name: `r${next++}` });
  const live = [start(), start()];
  await Promise.all(live.map((started) => started.waitForLine(/^ready$/)));

  // Appends keep coming until the kills are done, so that the workers are busy when they die. (With a fixed number
  // of events, a slow machine could run out of appends before the third kill, which then waited for a handled line
  // in vain.)
  const kills: { name: string; afterLine: string; handledButLost?: number }[] = [];
  const producing = produce(store, {
    streams: streamIds('random', 24),
    eventsPerStream: 25,
    maxEventsPerAppend: 2,
    pauseMs: 250,
    keepGoing: () => kills.length < 3,
    deadline: Date.now() + 45_000,
  });
  producing.catch(() => {}); // awaited below
  for (let kill = 0; kill < 3; kill++) {
    await sleep(500 + Math.random() * 700);
    const index = Math.floor(Math.random() * live.length);
    const victim = live[index] as WorkerProcess;
    // Busy: it has just handled an event, and is in the next handler, the acknowledgement or the commit.
    const [line] = await victim.waitForLine(/^handled \d+$/, {
      from: victim.lines.length,
      timeoutMs: 15_000,
    });
    await sleep(Math.random() * 4);
    process.kill(victim.pid, 'SIGKILL');
    await victim.exited;
    kills.push({ name: victim.name, afterLine: line });
    const replacement = start();
    live[index] = replacement;
    await replacement.waitForLine(/^ready$/);
  }
  const produced = await producing;
  const total = [...produced.acknowledged.values()].flat().length;
  await waitForCatchUp(database, view);
  const exits = await Promise.all(live.map((started) => stopWorker(started)));
  for (const exit of exits) expect(exit, workerLogs(workers)).toEqual({ code: 0, signal: null });

  const report = await inspectReadModel(database.sql, view);
  expectExactlyOnceInOrder(report, total);
  // For the record: how much each killed worker had handled that did not commit (rolled back, done again).
  for (const killed of kills) {
    const victim = workers.find((started) => started.name === killed.name) as WorkerProcess;
    const handled = victim.lines
      .filter((line) => line.startsWith('handled '))
      .map((line) => Number(line.slice(8)));
    const committed = new Set(
      report.rows.filter((row) => row.handledBy === killed.name).map((row) => row.offset),
    );
    killed.handledButLost = handled.filter((offset) => !committed.has(offset)).length;
  }
  console.info(`random kills: ${JSON.stringify(kills)}; ${total} events`);
  expect(kills).toHaveLength(3);
});
