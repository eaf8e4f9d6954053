/**
 * A transaction that stays open while others commit after it: it takes its transaction id first, then sits open
 * for FSTORE_TEST_LONG_TRANSACTION_SECONDS (default 30 s) while producers append and commit to other streams and
 * two worker processes project them, and only then appends its own events and commits. The frontier must not pass
 * over it: its events are delivered once it commits, once each, and nothing committed after it is delivered twice.
 * The scenario also measures what the open transaction costs the views: how much of what was committed during the
 * hold reached the read model before the transaction ended (the frontier cannot pass an open transaction, so
 * streams new to the view wait for it).
 */
import { budget } from '@fstore/test-harness/budget';
import { expect, test } from 'vitest';
import { produce } from './test-support/event-production.js';
import { checkInvariants, cleanReport, waitForViews } from './test-support/invariants.js';
import { stopWorker, workerLogs } from './test-support/process-control.js';
import { sleep, streamIds } from './test-support/scenario-fixtures.js';
import { useScenarioHarness } from './test-support/scenario-harness.js';
import { projectedCount, StreamLedger, takeTransactionId } from './test-support/sql-writers.js';

const harness = useScenarioHarness();

const seconds = Number(
  process.env.FSTORE_LONG_TRANSACTION_SECONDS ?? process.env.FSTORE_TEST_LONG_TRANSACTION_SECONDS ?? 30,
);
if (!Number.isFinite(seconds) || seconds <= 0) {
  throw new Error(`FSTORE_TEST_LONG_TRANSACTION_SECONDS=${seconds} is not a positive number`);
}
const holdMs = seconds * 1000;
const view = 'long';

test(
  `a transaction open for ${seconds} s, its id taken first and its events appended last, while others commit after it`,
  async () => {
    const { database, store } = await harness.setUp();
    const sql = database.sql;
    await sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 5)`;
    const workers = ['w1', 'w2'].map((name) =>
      harness.worker({ url: database.url, view, name, concurrency: 4, batchSize: 20, leaseSeconds: 5 }),
    );
    await Promise.all(workers.map((worker) => worker.waitForLine(/^ready$/, { timeoutMs: 60_000 })));

    // Some history first, delivered before the long transaction begins.
    const before = await produce(store, {
      streams: streamIds('before', 8),
      eventsPerStream: 5,
      deadline: Date.now() + 60_000,
    });
    await waitForViews(sql, [view], { timeoutMs: budget(30_000), explain: () => workerLogs(workers) });

    const ledger = new StreamLedger();
    const holder = await sql.reserve();
    harness.onCleanup(async () => {
      await holder`ROLLBACK`.catch(() => {});
      holder.release();
    });
    await holder`BEGIN`;
    const heldXid = await takeTransactionId(holder);
    const heldAt = Date.now();

    // While it is open: producers commit on streams of their own, new to the view.
    let holding = true;
    const during = produce(store, {
      streams: streamIds('during', 8),
      eventsPerStream: 3,
      pauseMs: 100,
      deadline: Date.now() + holdMs + 60_000,
      keepGoing: () => holding,
    });
    during.catch(() => {});
    const progress: { atMs: number; projected: number }[] = [];
    while (Date.now() - heldAt < holdMs) {
      await sleep(Math.min(2000, holdMs / 10));
      progress.push({ atMs: Date.now() - heldAt, projected: await projectedCount(sql, view) });
    }
    holding = false;
    const duringProduced = await during;
    const [counts] = await sql<{ events: number; xids_after: number }[]>`
      SELECT count(*)::int AS events, count(*) FILTER (WHERE transaction_id > ${String(heldXid)}::xid8)::int AS xids_after
      FROM events`;
    const projectedWhileOpen = await projectedCount(sql, view);

    // Now the long transaction appends: one event to a stream, two to another.
    const own = await ledger.append(holder, 'held-00');
    await ledger.append(holder, 'held-01');
    await ledger.append(holder, 'held-01');
    expect(own.transactionId).toBe(heldXid);
    await ledger.commit(holder);
    const committedAt = Date.now();
    await waitForViews(sql, [view], { timeoutMs: budget(60_000), explain: () => workerLogs(workers) });
    const caughtUpMs = Date.now() - committedAt;

    await Promise.all(workers.map((worker) => stopWorker(worker)));
    const acknowledged = new Map([
      ...before.acknowledged,
      ...duringProduced.acknowledged,
      ...ledger.acknowledged,
    ]);
    expect(await checkInvariants(sql, [view], acknowledged)).toEqual(cleanReport([view]));

    const appendedWhileOpen = (counts?.events ?? 0) - 40;
    console.info(
      `long transaction (xid ${heldXid}) open ${holdMs} ms: ${counts?.xids_after} events committed after its id; ` +
        `${projectedWhileOpen - 40} of the ${appendedWhileOpen} events appended while it was open reached the read ` +
        `model before it committed (progress ${JSON.stringify(progress)}); all caught up ${caughtUpMs} ms after its commit`,
    );
  },
  budget(holdMs + 120_000),
);
