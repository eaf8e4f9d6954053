/**
 * The server stops like a crash (immediate mode: no shutdown, the WAL is replayed at start) while transactions are
 * in flight: three transactions have taken their ids and appended to streams of their own, and have not
 * committed, while producers append and two worker processes project. A PostgreSQL of this file's own (never the
 * run's shared one). After the restart: the in-flight events are in neither the log nor the read model; a new
 * transaction can start those streams again, and its events are delivered; every committed event is delivered
 * exactly once, in stream order.
 */
import { migrate } from '@fstore/schema';
import { createEventStore } from '@fstore/store';
import { type RestartableServer, startRestartableServer, withDatabase } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, expect, onTestFailed, test } from 'vitest';
import { produce } from './test-support/event-production.js';
import {
  caughtUp,
  checkInvariants,
  cleanReport,
  describeView,
  waitUntil,
} from './test-support/invariants.js';
import { startWorker, stopWorker, type WorkerProcess, workerLogs } from './test-support/process-control.js';
import { counterEvents, createReadModel, sleep, streamIds } from './test-support/scenario-fixtures.js';
import { StreamLedger, takeTransactionId } from './test-support/sql-writers.js';

let server: RestartableServer;
const workers: WorkerProcess[] = [];
const clients: postgres.Sql[] = [];

beforeAll(async () => {
  server = await startRestartableServer();
});
afterAll(async () => {
  await server?.destroy();
});
afterEach(async () => {
  for (const worker of workers) if (worker.alive) worker.child.kill('SIGKILL');
  await Promise.all(workers.map((worker) => worker.exited));
  await Promise.all(clients.map((client) => client.end({ timeout: 1 }).catch(() => {})));
  if (!server.running) await server.start();
});

test('PostgreSQL crashes (immediate stop) with transactions in flight, under producers and two workers', async () => {
  const name = 'fstore_restart_in_flight';
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = withDatabase(server.adminUrl, name);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  clients.push(sql);
  await migrate(sql);
  await createReadModel(sql);
  const view = 'in-flight';
  await sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 5)`;
  // Producers reconnect soon after the restart (see database-restart.scenario.ts for postgres.js's backoff).
  const storeClient = postgres(url, {
    max: 8,
    onnotice: () => {},
    connect_timeout: 5,
    backoff: (failures: number) => Math.min(0.05 * 2 ** failures, 0.5),
  });
  clients.push(storeClient);
  const store = createEventStore(drizzle(storeClient), counterEvents);
  await store.register();
  // The in-flight transactions' own pool, ended by the crash.
  const writers = postgres(url, { max: 3, onnotice: () => {}, connect_timeout: 5 });
  clients.push(writers);

  // Supervised as a process manager would: a worker that dies is replaced (see database-restart.scenario.ts).
  let stopping = false;
  const live = new Set<WorkerProcess>();
  const supervise = (workerName: string): void => {
    const worker = startWorker({
      url,
      view,
      name: workerName,
      leaseSeconds: 2,
      maxBatchSeconds: 6,
      batchSize: 5,
    });
    workers.push(worker);
    live.add(worker);
    void worker.exited.then(async () => {
      live.delete(worker);
      await sleep(500);
      if (!stopping) supervise(`${workerName}+`);
    });
  };
  supervise('p1');
  supervise('p2');
  onTestFailed(() => {
    console.error(workerLogs(workers));
  });
  await Promise.all([...live].map((worker) => worker.waitForLine(/^ready$/, { timeoutMs: 60_000 })));

  const producing = produce(store, {
    streams: streamIds('committed', 12),
    eventsPerStream: 20,
    maxEventsPerAppend: 2,
    pauseMs: 150,
    retryConnectionErrors: true,
    deadline: Date.now() + 120_000,
  });
  producing.catch(() => {});
  await sleep(1000);

  // Three transactions in flight: each took its id, appended two events to a stream of its own, and waits.
  const ledger = new StreamLedger();
  const inFlight = await Promise.all(
    streamIds('in-flight', 3).map(async (stream) => {
      const tx = await writers.reserve();
      await tx`BEGIN`;
      const xid = await takeTransactionId(tx);
      await ledger.append(tx, stream);
      await sleep(200);
      await ledger.append(tx, stream);
      return { tx, stream, xid };
    }),
  );
  // Committed work after them, consumed while they are open.
  await sleep(1000);
  const [before] = await sql<{ events: number; projected: number }[]>`
    SELECT (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM projected) AS projected`;
  await server.stop({ mode: 'immediate' });
  await sleep(1500);
  await server.start();
  const restartedAt = Date.now();
  const step = (what: string) => console.info(`${Date.now() - restartedAt} ms after the restart: ${what}`);
  step('started');
  for (const { tx } of inFlight) {
    ledger.forget(tx); // the connection is gone: the transaction never committed
    tx.release();
  }

  // The streams of the lost transactions start again, in a transaction that commits. (A new pool: postgres.js
  // does not give back the reserved connections that the crash cut.)
  const afterwards = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  clients.push(afterwards);
  const again = await afterwards.reserve();
  await again`BEGIN`;
  for (const { stream } of inFlight) await ledger.append(again, stream);
  await ledger.commit(again);
  step('in-flight streams started again');
  again.release();

  const produced = await producing;
  step('producers done');
  await waitUntil(() => caughtUp(sql, view), {
    timeoutMs: budget(60_000),
    what: `view ${view} to catch up after the restart`,
    explain: async () => `${await describeView(sql, view)}\n${workerLogs(workers)}`,
  });
  const caughtUpMs = Date.now() - restartedAt;
  stopping = true;
  await Promise.all([...live].map((worker) => stopWorker(worker)));

  const lost = inFlight.map(({ xid }) => String(xid));
  const [leftovers] = await sql<{ events: number; projected: number }[]>`
    SELECT (SELECT count(*)::int FROM events WHERE transaction_id::text = ANY (${lost})) AS events,
           (SELECT count(*)::int FROM projected p JOIN events e USING ("offset")
            WHERE e.transaction_id::text = ANY (${lost})) AS projected`;
  expect(leftovers).toEqual({ events: 0, projected: 0 });
  const acknowledged = new Map([...produced.acknowledged, ...ledger.acknowledged]);
  expect(await checkInvariants(sql, [view], acknowledged)).toEqual(cleanReport([view]));
  expect(before?.events).toBeGreaterThan(0);
  expect(before?.projected).toBeGreaterThan(0);
  console.info(
    `restart with transactions in flight (ids ${lost.join(', ')}): ${before?.events} events committed and ` +
      `${before?.projected} projected before the crash; ${produced.retries} appends retried; caught up ` +
      `${caughtUpMs} ms after the restart; ${workers.length - 2} workers replaced`,
  );
});
