/**
 * Faults under load, each a bounded case that stops by itself, on a database of its own, with worker processes
 * (test-support/worker-process.ts) projecting while producers append:
 * - a batch whose COMMIT succeeds but whose answer never reaches the worker (a proxy cuts it), the worker also
 *   SIGKILLed at that moment: nobody does that batch again;
 * - sessions of workers and producers terminated again and again (pg_terminate_backend);
 * - handlers slower than their lease: renewed, nothing handled twice; not renewed (a handler that blocks the event
 *   loop, and a holder that leased with SQL and never renewed): another worker takes over after expiry, and the
 *   stale holder's acknowledgement fails with 55P03 and its writes roll back;
 * - an idle transaction holding one stream's `locks` row: the other streams keep being projected.
 * Every case ends with checkInvariants: chains whole and unforked, the log exactly what producers saw acknowledged,
 * every event committed to every view's read model once and in stream order, the read model equal to a fold of the
 * log, every stream acknowledged to its end, nothing parked.
 */
import { randomUUID } from 'node:crypto';
import { expect, test } from 'vitest';
import { type CutAcknowledgement, startCommitCuttingProxy } from './test-support/commit-cutting-proxy.js';
import { produce } from './test-support/event-production.js';
import { checkInvariants, cleanReport, waitForViews, waitUntil } from './test-support/invariants.js';
import { stopWorker, type WorkerProcess, workerLogs } from './test-support/process-control.js';
import { sleep, streamIds, withApplicationName, withTimeout } from './test-support/scenario-fixtures.js';
import { producerApplicationName, useScenarioHarness } from './test-support/scenario-harness.js';

const harness = useScenarioHarness();
const logs = () => workerLogs(harness.workers);

/** Stops the workers still alive, gracefully, and expects each to exit 0. */
async function stopAll(workers: readonly WorkerProcess[]) {
  const exits = await Promise.all(
    workers
      .filter((worker) => worker.alive)
      .map(async (worker) => ({ name: worker.name, ...(await stopWorker(worker)) })),
  );
  expect(
    exits.filter((exit) => exit.code !== 0),
    logs(),
  ).toEqual([]);
}

const handledLines = (worker: WorkerProcess) =>
  worker.lines.filter((line) => line.startsWith('handled ')).map((line) => Number(line.slice(8)));

test.each([
  { mode: 'cut' as const, what: 'the connection is cut: the worker lives on, not knowing' },
  { mode: 'kill' as const, what: 'the worker process is SIGKILLed at that moment and replaced' },
])(
  'a batch commits but the answer to its COMMIT is lost ($what): nobody handles those events again',
  async ({ mode }) => {
    const { database, store } = await harness.setUp();
    const view = `commit-lost-${mode}`;
    const proxy = await startCommitCuttingProxy(database.url);
    harness.onCleanup(() => proxy.close());
    const options = { view, leaseSeconds: 2, batchSize: 4, concurrency: 3, handlerDelayMs: 2 };
    let next = 1;
    const startVictim = () => harness.worker({ ...options, url: proxy.url, name: `victim${next++}` });
    let victim = startVictim();
    const other = harness.worker({ ...options, url: database.url, name: 'other' });
    await Promise.all([victim, other].map((worker) => worker.waitForLine(/^ready$/)));

    const cutsWanted = mode === 'cut' ? 3 : 2;
    const cuts: (CutAcknowledgement & { victim: string; committedBefore: boolean })[] = [];
    const producing = produce(store, {
      streams: streamIds('lost', 16),
      eventsPerStream: 10,
      maxEventsPerAppend: 2,
      pauseMs: 40,
      keepGoing: () => cuts.length < cutsWanted,
      deadline: Date.now() + 60_000,
    });
    producing.catch(() => {}); // awaited below
    for (let round = 0; round < cutsWanted; round++) {
      const current = victim;
      const ack = await withTimeout(
        proxy.cutNextAckCommit(
          mode === 'kill' ? { beforeCut: () => process.kill(current.pid, 'SIGKILL') } : {},
        ),
        20_000,
        `an acknowledgement by ${current.name} to cut`,
      );
      // The server did commit it: each stream's position is past its acknowledged offset, and the events are in
      // the read model, written by the victim.
      let committedBefore = true;
      for (const stream of ack.streams) {
        const [lock] = await database.sql<{ last_offset: string }[]>`
          SELECT last_offset FROM locks WHERE view = ${view} AND decider_id = ${stream.deciderId}`;
        const [row] = await database.sql<{ handled_by: string }[]>`
          SELECT handled_by FROM projected WHERE view = ${view} AND "offset" = ${stream.offset}`;
        committedBefore &&= Number(lock?.last_offset) >= stream.offset && row?.handled_by === current.name;
      }
      cuts.push({ ...ack, victim: current.name, committedBefore });
      if (mode === 'kill') {
        expect(await current.exited).toEqual({ code: null, signal: 'SIGKILL' });
        victim = startVictim();
        await victim.waitForLine(/^ready$/);
      } else {
        // It carries on: it sees a connection error, the batch's outcome unknown to it. (A batch of one stream
        // fails "outside the handler"; a group of streams is tried again stream by stream, and each finds its
        // lease gone: the group's acknowledgement released it.)
        await waitUntil(async () => /batch failed outside the handler|lease lost/.test(current.stderr()), {
          timeoutMs: 5_000,
          what: `${current.name} to notice the lost connection`,
        });
      }
    }
    const produced = await producing;
    await waitForViews(database.sql, [view], { timeoutMs: 30_000, explain: logs });
    await stopAll(harness.workers);

    expect(await checkInvariants(database.sql, [view], produced.acknowledged)).toEqual(cleanReport([view]));
    expect(cuts.map((cut) => cut.committedBefore)).toEqual(cuts.map(() => true));
    // Each cut acknowledgement's events stay the victim's: nobody did them again (no duplicate, checked above, and
    // not redone by another worker after a rollback either).
    for (const cut of cuts) {
      for (const stream of cut.streams) {
        const rows = await database.sql<{ handled_by: string }[]>`
          SELECT handled_by FROM projected WHERE view = ${view} AND "offset" = ${stream.offset}`;
        expect(rows.map((row) => row.handled_by)).toEqual([cut.victim]);
      }
    }
    if (mode === 'cut') expect(victim.alive || victim.lines.includes('stopped')).toBe(true);
    const total = [...produced.acknowledged.values()].flat().length;
    console.info(
      `commit lost (${mode}): ${cuts.length} acknowledgements cut (${cuts.map((cut) => `${cut.function} ${cut.streams.map((stream) => `${stream.deciderId}@${stream.offset}`).join(' ')}`).join(', ')}); ${total} events; ` +
        `handled by ${harness.workers.map((worker) => `${worker.name} ${handledLines(worker).length}`).join(', ')}`,
    );
  },
);

test('sessions of producers and workers terminated again and again under load: retried, reconnected, every invariant holds', async () => {
  const { database, store } = await harness.setUp();
  const view = 'terminated';
  const workerUrl = withApplicationName(database.url, 'fstore-scenario-worker');
  // A session cut in the middle of a write can leave postgres.js waiting for ever on a query it never finished
  // sending: maxBatchSeconds ends such a batch's session, and the stream is delivered again.
  const options = { url: workerUrl, view, leaseSeconds: 2, maxBatchSeconds: 6, batchSize: 5, concurrency: 3 };
  const pair = [harness.worker({ ...options, name: 't1' }), harness.worker({ ...options, name: 't2' })];
  await Promise.all(pair.map((worker) => worker.waitForLine(/^ready$/)));

  let producing = true;
  const production = produce(store, {
    streams: streamIds('terminated', 20),
    eventsPerStream: 20,
    maxEventsPerAppend: 2,
    pauseMs: 60,
    retryConnectionErrors: true,
    deadline: Date.now() + 60_000,
  }).finally(() => {
    producing = false;
  });
  production.catch(() => {}); // awaited below

  // Every 150-400 ms, terminate about half of the sessions of the producers and workers, for at most 8 s.
  const terminated = { producer: 0, worker: 0, rounds: 0 };
  const until = Date.now() + 8_000;
  while (producing && Date.now() < until) {
    await sleep(150 + Math.random() * 250);
    const sessions = await database.sql<{ pid: number; application_name: string }[]>`
      SELECT pid, application_name FROM pg_stat_activity
      WHERE datname = current_database() AND application_name IN (${producerApplicationName}, 'fstore-scenario-worker')`;
    const victims = sessions.filter(() => Math.random() < 0.5);
    for (const session of victims) {
      const [row] = await database.sql<
        { done: boolean }[]
      >`SELECT pg_terminate_backend(${session.pid}) AS done`;
      if (row?.done)
        terminated[session.application_name === producerApplicationName ? 'producer' : 'worker']++;
    }
    terminated.rounds++;
  }
  const produced = await production;
  await waitForViews(database.sql, [view], { timeoutMs: 30_000, explain: logs });
  const deaths = pair.filter((worker) => !worker.alive).map((worker) => worker.name);
  await stopAll(pair);

  expect(await checkInvariants(database.sql, [view], produced.acknowledged)).toEqual(cleanReport([view]));
  expect([...produced.acknowledged.values()].flat()).toHaveLength(20 * 20);
  expect(deaths).toEqual([]);
  expect(terminated.producer).toBeGreaterThan(0);
  expect(terminated.worker).toBeGreaterThan(0);
  expect(produced.retries).toBeGreaterThan(0);
  console.info(
    `terminations: ${JSON.stringify(terminated)}; ${produced.retries} appends retried (${JSON.stringify(Object.fromEntries(produced.retriedErrors))})`,
  );
});

// Without the workspace's postgres.js patch this failed about two runs in three: postgres.js 3.4.9 did not fail the
// rest of a transaction whose session died. The handler's next statements ran on the reconnected connection, even
// inside another batch's transaction, and committed there: events handled twice, events skipped yet acknowledged, a
// stream out of order (porsager/postgres#1215, #1216; the patch and packages/store/src/postgres-driver.test.ts).
test('batch transactions whose sessions are terminated while idle in transaction (between handler calls): still exactly once, in order', async () => {
  const { database, store } = await harness.setUp();
  const view = 'idle-terminated';
  const url = withApplicationName(database.url, 'fstore-scenario-worker');
  const options = { url, view, leaseSeconds: 2, batchSize: 5, concurrency: 4, handlerDelayMs: 150 };
  const pair = [harness.worker({ ...options, name: 'i1' }), harness.worker({ ...options, name: 'i2' })];
  await Promise.all(pair.map((worker) => worker.waitForLine(/^ready$/)));
  let producing = true;
  const production = produce(store, {
    streams: streamIds('idle', 12),
    eventsPerStream: 20,
    maxEventsPerAppend: 3,
    pauseMs: 50,
    deadline: Date.now() + 60_000,
  }).finally(() => {
    producing = false;
  });
  production.catch(() => {}); // awaited below
  let terminated = 0;
  const until = Date.now() + 10_000;
  while (producing && Date.now() < until) {
    await sleep(20 + Math.random() * 40);
    const idle = await database.sql<{ pid: number }[]>`
      SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'fstore-scenario-worker'
        AND state = 'idle in transaction'`;
    for (const session of idle) {
      const [row] = await database.sql<
        { done: boolean }[]
      >`SELECT pg_terminate_backend(${session.pid}) AS done`;
      if (row?.done) terminated++;
    }
  }
  const produced = await production;
  // A hung batch is one of the failures: report it with the rest rather than stop at the timeout.
  const caughtUp = await waitForViews(database.sql, [view], { timeoutMs: 25_000, explain: logs }).then(
    () => true,
    (error: Error) => {
      console.error(error.message);
      return false;
    },
  );
  await stopAll(pair);
  expect(terminated).toBeGreaterThan(0);
  expect({ caughtUp, report: await checkInvariants(database.sql, [view], produced.acknowledged) }).toEqual({
    caughtUp: true,
    report: cleanReport([view]),
  });
  console.info(`idle in transaction: ${terminated} batch sessions terminated`);
});

test('handlers slower than their lease, with renewal: leases held throughout, nothing handled twice', async () => {
  const { database, store } = await harness.setUp();
  const view = 'slow-renewed';
  // Batches of 3 events at 700 ms each: a transaction of over 2 s on a lease of 1 s, renewed every 333 ms. Leases
  // only: a log batch that slow is ended at its time limit and rolled back (log-batches.test.ts).
  const options = {
    url: database.url,
    view,
    logBatches: false,
    leaseSeconds: 1,
    batchSize: 3,
    concurrency: 2,
    handlerDelayMs: 700,
  };
  const pair = [harness.worker({ ...options, name: 's1' }), harness.worker({ ...options, name: 's2' })];
  await Promise.all(pair.map((worker) => worker.waitForLine(/^ready$/)));
  const produced = await produce(store, {
    streams: streamIds('slow', 4),
    eventsPerStream: 3,
    maxEventsPerAppend: 3,
    deadline: Date.now() + 30_000,
  });
  await waitForViews(database.sql, [view], { timeoutMs: 30_000, explain: logs });
  await stopAll(pair);

  expect(await checkInvariants(database.sql, [view], produced.acknowledged)).toEqual(cleanReport([view]));
  // Each event was handled once, in a committed transaction: not even a handling that rolled back.
  const handled = pair.flatMap(handledLines).sort((a, b) => a - b);
  expect(handled).toEqual([...new Set(handled)]);
  expect(handled).toHaveLength(12);
  expect(pair.filter((worker) => /lease lost/.test(worker.stderr())).map((worker) => worker.name)).toEqual(
    [],
  );
  // And the transactions did outlive their lease: some stream took longer than a second from first to last write.
  const [longest] = await database.sql<{ ms: number }[]>`
    SELECT max(extract(epoch FROM last - first) * 1000)::int AS ms
    FROM (SELECT min(handled_at) AS first, max(handled_at) AS last FROM projected GROUP BY decider_id) spans`;
  expect(longest?.ms).toBeGreaterThan(1000);
});

test('a handler that blocks its event loop past the lease (no renewal possible): another worker takes over, the stale batch rolls back', async () => {
  const { database, store } = await harness.setUp();
  const view = 'blocked';
  const first = await produce(store, {
    streams: ['blocked'],
    eventsPerStream: 3,
    maxEventsPerAppend: 3,
    deadline: Date.now() + 10_000,
  });
  const blockedOffsets = (
    await database.sql<
      { offset: string }[]
    >`SELECT "offset" FROM events WHERE decider_id = 'blocked' ORDER BY "offset"`
  ).map((row) => Number(row.offset));
  const last = blockedOffsets.at(-1) as number;
  // Leases only: the scenario is about a lease that expires under a holder that cannot renew it (a log batch is held
  // by its transaction instead; log-batches.test.ts ends a hung one).
  const options = {
    url: database.url,
    view,
    leaseSeconds: 1,
    batchSize: 10,
    concurrency: 2,
    logBatches: false,
  };
  const stale = harness.worker({
    ...options,
    url: withApplicationName(database.url, 'fstore-stale'),
    name: 'stale',
    blockAtOffset: last,
    blockMs: 5_000,
  });
  await stale.waitForLine(new RegExp(`^blocking ${last}$`));
  const leaseOf = async () => {
    const [lock] = await database.sql<{ lease_id: string | null }[]>`
      SELECT lease_id FROM locks WHERE view = ${view} AND decider_id = 'blocked'`;
    return lock?.lease_id ?? null;
  };
  const staleLease = await leaseOf();
  // The first worker is stuck inside its batch with no timer running. A second one starts, finds the lease expired,
  // and takes the stream; more streams arrive meanwhile.
  const taker = harness.worker({
    ...options,
    url: withApplicationName(database.url, 'fstore-taker'),
    name: 'taker',
  });
  const more = produce(store, {
    streams: streamIds('meanwhile', 6),
    eventsPerStream: 5,
    maxEventsPerAppend: 2,
    pauseMs: 30,
    deadline: Date.now() + 20_000,
  });
  await waitUntil(async () => ![null, staleLease].includes(await leaseOf()), {
    timeoutMs: 15_000,
    what: 'the taker to lease the blocked stream',
    explain: logs,
  });
  const takenOverWhileBlocked = !stale.lines.includes(`unblocked ${last}`);
  // The taker's handler then waits for the stale transaction's row in counter_totals (a stale holder's uncommitted
  // writes keep their row locks until it ends, lease or no lease): it handles the stream once the stale batch has
  // rolled back.
  await waitUntil(
    async () => {
      const [row] = await database.sql<{ waiting: boolean }[]>`
        SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                       WHERE application_name = 'fstore-taker' AND wait_event_type = 'Lock') AS waiting`;
      return row?.waiting === true;
    },
    { timeoutMs: 5_000, what: "the taker to wait for the stale transaction's row", explain: logs },
  );
  const takerWaitedWhileBlocked = !stale.lines.includes(`unblocked ${last}`);
  await stale.waitForLine(new RegExp(`^unblocked ${last}$`), { timeoutMs: 15_000 });
  await taker.waitForLine(new RegExp(`^handled ${last}$`), { timeoutMs: 15_000 });
  const second = await more;
  await waitUntil(async () => /lease lost/.test(stale.stderr()), {
    timeoutMs: 10_000,
    what: 'the stale worker to find its lease lost',
    explain: logs,
  });
  await waitForViews(database.sql, [view], { timeoutMs: 30_000, explain: logs });
  await stopAll([stale, taker]);

  const acknowledged = new Map([...first.acknowledged, ...second.acknowledged]);
  expect(await checkInvariants(database.sql, [view], acknowledged)).toEqual(cleanReport([view]));
  expect({ takenOverWhileBlocked, takerWaitedWhileBlocked }).toEqual({
    takenOverWhileBlocked: true,
    takerWaitedWhileBlocked: true,
  });
  // The stale worker did handle the stream's events, in a transaction that rolled back: the taker's stayed.
  expect(handledLines(stale)).toEqual(expect.arrayContaining(blockedOffsets));
  const rows = await database.sql<{ offset: string; handled_by: string }[]>`
    SELECT "offset", handled_by FROM projected WHERE view = ${view} AND decider_id = 'blocked' ORDER BY "offset"`;
  expect(rows.map((row) => [Number(row.offset), row.handled_by])).toEqual(
    blockedOffsets.map((offset) => [offset, 'taker']),
  );
});

test('a holder that leased with SQL and never renewed: a worker takes over after expiry, the stale ack_events fails with 55P03 and its writes roll back', async () => {
  const { database, store } = await harness.setUp();
  const view = 'stale-sql';
  await database.sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 1)`;
  const first = await produce(store, {
    streams: ['stale'],
    eventsPerStream: 3,
    maxEventsPerAppend: 3,
    deadline: Date.now() + 10_000,
  });
  const holder = database.connect({ max: 1 });
  const leased = await holder<{ lease_id: string; decider_id: string; offset: string }[]>`
    SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 1, 100, 1)`;
  expect(leased.map((row) => row.decider_id)).toEqual(['stale', 'stale', 'stale']);
  const leaseId = leased[0]?.lease_id ?? '';
  const lastOffset = Number(leased.at(-1)?.offset);

  let releaseHolder: () => void = () => {};
  const holderMayAck = new Promise<void>((resolve) => {
    releaseHolder = resolve;
  });
  let wrote: () => void = () => {};
  const holderWrote = new Promise<void>((resolve) => {
    wrote = resolve;
  });
  // The holder's "handler": writes the read model in its transaction, then (much later) acknowledges.
  const holderTransaction = holder
    .begin(async (tx) => {
      for (const row of leased) {
        await tx`INSERT INTO projected (view, decider_id, "offset", handled_by)
                 VALUES (${view}, ${row.decider_id}, ${row.offset}, 'stale-holder')`;
      }
      wrote();
      await holderMayAck;
      await tx`SELECT * FROM ack_events(${view}, 'stale', ${leaseId}::uuid, ${lastOffset}::bigint)`;
    })
    .then(
      () => undefined,
      (error: { code?: string; constraint_name?: string }) => error,
    );
  await holderWrote;
  await sleep(1_100); // the lease (1 s) has expired; nobody renewed it

  const worker = harness.worker({ url: database.url, view, name: 'worker', leaseSeconds: 2 });
  const more = produce(store, {
    streams: streamIds('others', 4),
    eventsPerStream: 4,
    maxEventsPerAppend: 2,
    deadline: Date.now() + 20_000,
  });
  await worker.waitForLine(new RegExp(`^handled ${lastOffset}$`), { timeoutMs: 15_000 });
  await waitUntil(
    async () => {
      const [lock] = await database.sql<{ last_offset: string }[]>`
        SELECT last_offset FROM locks WHERE view = ${view} AND decider_id = 'stale'`;
      return Number(lock?.last_offset) === lastOffset;
    },
    { timeoutMs: 10_000, what: 'the worker to acknowledge the stale stream', explain: logs },
  );
  releaseHolder();
  const failure = await holderTransaction;
  expect(failure).toMatchObject({ code: '55P03', constraint_name: 'locks_lease_held' });

  const second = await more;
  await waitForViews(database.sql, [view], { timeoutMs: 30_000, explain: logs });
  await stopAll([worker]);
  const acknowledged = new Map([...first.acknowledged, ...second.acknowledged]);
  expect(await checkInvariants(database.sql, [view], acknowledged)).toEqual(cleanReport([view]));
  const staleRows = await database.sql`SELECT 1 FROM projected WHERE handled_by = 'stale-holder'`;
  expect(staleRows).toHaveLength(0);
});

test('an idle transaction holding one stream’s locks row (FOR UPDATE): appends go on, the other streams’ pending events are projected meanwhile, the view reads on once released', async () => {
  const { database, store } = await harness.setUp();
  const view = 'long-transaction';
  await database.sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 2)`;
  const held = 'held';
  const before = await produce(store, {
    streams: [held, ...streamIds('free', 11)],
    eventsPerStream: 3,
    maxEventsPerAppend: 2,
    deadline: Date.now() + 10_000,
  });
  // The view has read these into lock rows (appends write none): there is a row to hold.
  while ((await database.sql<{ n: number }[]>`SELECT advance_view(${view}) AS n`)[0]?.n) {}

  const holder = database.connect({ max: 1 });
  const [holderSession] = await holder<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let locked: () => void = () => {};
  const isLocked = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const holding = holder.begin(async (tx) => {
    const rows = await tx`SELECT * FROM locks WHERE view = ${view} AND decider_id = ${held} FOR UPDATE`;
    expect(rows).toHaveLength(1);
    locked();
    await released;
  });
  await isLocked;

  const options = { url: database.url, view, leaseSeconds: 2, batchSize: 5, concurrency: 3 };
  const pair = [harness.worker({ ...options, name: 'l1' }), harness.worker({ ...options, name: 'l2' })];
  // Appends never touch lock rows: one to the held stream commits while the row is held, and so do the others.
  const heldTail = before.acknowledged.get(held)?.at(-1) ?? null;
  const heldEventId = randomUUID();
  await store.append(held, [{ type: 'Incremented', data: { n: 4 }, eventId: heldEventId }], {
    expectedLastEventId: heldTail,
  });
  const during = await produce(store, {
    streams: streamIds('more', 11),
    eventsPerStream: 10,
    maxEventsPerAppend: 2,
    pauseMs: 20,
    deadline: Date.now() + 20_000,
  });
  const heldStarted = Date.now();
  // The other streams' events from before the hold are projected meanwhile (leases skip the held row). Locking a
  // row gives the holder a transaction id, so the view reads nothing appended after it began until it ends.
  const otherStreams = [...before.acknowledged.keys()].filter((stream) => stream !== held);
  await waitUntil(
    async () => {
      const [row] = await database.sql<{ missing: number }[]>`
        SELECT count(*)::int AS missing FROM events e
        WHERE e.decider_id = ANY (${otherStreams}::text[])
          AND NOT EXISTS (SELECT 1 FROM projected p WHERE p.view = ${view} AND p."offset" = e."offset")`;
      return row?.missing === 0;
    },
    { timeoutMs: 20_000, what: 'the other streams to be projected while the row is held', explain: logs },
  );
  const othersCaughtUpMs = Date.now() - heldStarted;
  // Nobody waits for the held row: not the appends, and not the consumers.
  const [stalled] = await database.sql<{ projected: number; holder: string; waiting: boolean }[]>`
    SELECT (SELECT count(*)::int FROM projected WHERE view = ${view} AND decider_id = ${held}) AS projected,
           (SELECT state FROM pg_stat_activity WHERE pid = ${holderSession?.pid ?? 0}) AS holder,
           EXISTS (SELECT 1 FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock') AS waiting`;
  release();
  await holding;
  await waitForViews(database.sql, [view], { timeoutMs: 20_000, explain: logs });
  await stopAll(pair);

  expect(stalled).toEqual({ projected: 0, holder: 'idle in transaction', waiting: false });
  const acknowledged = new Map([...before.acknowledged, ...during.acknowledged]);
  acknowledged.set(held, [...(before.acknowledged.get(held) ?? []), heldEventId]);
  expect(await checkInvariants(database.sql, [view], acknowledged)).toEqual(cleanReport([view]));
  console.info(
    `held lock row: the other 11 streams' pending events projected ${othersCaughtUpMs} ms after the hold began`,
  );
});
