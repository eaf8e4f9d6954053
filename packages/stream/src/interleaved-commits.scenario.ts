/**
 * Many writers whose commits interleave, so that transaction-id order and commit order disagree: 8 writers, each
 * on a connection of its own, run transactions for FSTORE_TEST_INTERLEAVED_SECONDS (default 20 s). Each transaction
 * takes its id early (a write to another table, or pg_current_xact_id()) half of the time, waits a random short
 * while, appends one to three events to one or two of the writer's streams, waits again, and commits (one in ten
 * rolls back instead: those events never happened). Three worker processes project the view throughout. At the end
 * every committed event is delivered exactly once, in order within its stream, and no rolled-back one ever is.
 */
import { budget } from '@fstore/test-harness/budget';
import type postgres from 'postgres';
import { expect, test } from 'vitest';
import { caughtUp, checkInvariants, cleanReport } from './test-support/invariants.js';
import { stopWorker } from './test-support/process-control.js';
import { sleep, streamIds } from './test-support/scenario-fixtures.js';
import { useScenarioHarness } from './test-support/scenario-harness.js';
import { projectedCount, StreamLedger, takeTransactionId } from './test-support/sql-writers.js';

const harness = useScenarioHarness();

const seconds = Number(
  process.env.FSTORE_INTERLEAVED_SECONDS ?? process.env.FSTORE_TEST_INTERLEAVED_SECONDS ?? 20,
);
if (!Number.isFinite(seconds) || seconds <= 0) {
  throw new Error(`FSTORE_TEST_INTERLEAVED_SECONDS=${seconds} is not a positive number`);
}
const writers = 8;
const streamsPerWriter = 4;
const view = 'interleaved';

const pause = (maxMs: number) => sleep(Math.floor(Math.random() ** 2 * maxMs));

interface Committed {
  xid: bigint;
  /** Commit order, as the writers saw their COMMITs return. */
  seq: number;
  writer: number;
  /** Milliseconds since the start: BEGIN, the id taken (when early), the first append, COMMIT returned. */
  begunMs: number;
  idMs?: number;
  appendedMs: number;
  committedMs: number;
  offsets: number[];
}

/**
 * Waits until the view has every event of the log, or until it has nothing left to do (no pending or leased
 * stream, no event past its frontier) for five seconds while events are still missing: then they are lost.
 */
async function settle(sql: postgres.Sql, view: string, timeoutMs: number): Promise<'caught up' | 'stuck'> {
  let idleSince: number | undefined;
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(200)) {
    if (await caughtUp(sql, view)) return 'caught up';
    const [status] = await sql<{ pending: string; leased: string; behind: string }[]>`
      SELECT pending_streams AS pending, leased_streams AS leased, events_behind AS behind
      FROM view_status() WHERE view = ${view}`;
    const idle = status?.pending === '0' && status.leased === '0' && status.behind === '0';
    idleSince = idle ? (idleSince ?? Date.now()) : undefined;
    if (idleSince !== undefined && Date.now() - idleSince > 5000) return 'stuck';
  }
  return 'stuck';
}

test(
  `${writers} writers with interleaved commits (ids taken early, appends late, rollbacks) and 3 workers, for ${seconds} s`,
  async () => {
    const { database } = await harness.setUp();
    const sql = database.sql;
    await sql`CREATE TABLE side_writes (writer int, at timestamptz DEFAULT clock_timestamp())`;
    await sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 5)`;
    const workers = ['w1', 'w2', 'w3'].map((name) =>
      harness.worker({ url: database.url, view, name, concurrency: 4, batchSize: 20, leaseSeconds: 5 }),
    );
    await Promise.all(workers.map((worker) => worker.waitForLine(/^ready$/, { timeoutMs: 60_000 })));

    const ledger = new StreamLedger();
    const committed: Committed[] = [];
    const tally = { transactions: 0, early: 0, rolledBack: 0, rolledBackEvents: 0, events: 0 };
    const rolledBackOffsets: number[] = [];
    const startedAt = Date.now();
    const now = () => Date.now() - startedAt;
    const until = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: writers }, async (_, writer) => {
        const tx = await sql.reserve();
        harness.onCleanup(() => tx.release());
        const streams = streamIds(`writer-${writer}`, streamsPerWriter);
        while (Date.now() < until) {
          await tx`BEGIN`;
          const begunMs = now();
          tally.transactions++;
          let xid: bigint | undefined;
          let idMs: number | undefined;
          const early = Math.random() < 0.5;
          if (early) {
            tally.early++;
            if (Math.random() < 0.5) await tx`INSERT INTO side_writes (writer) VALUES (${writer})`;
            xid = await takeTransactionId(tx);
            idMs = now();
          }
          await pause(early ? 300 : 50);
          const appendedMs = now();
          const offsets: number[] = [];
          const touched = 1 + Math.floor(Math.random() * 2);
          for (let s = 0; s < touched; s++) {
            const stream = streams[Math.floor(Math.random() * streams.length)] as string;
            const count = 1 + Math.floor(Math.random() * 3);
            for (let e = 0; e < count; e++) {
              const appended = await ledger.append(tx, stream);
              if (xid !== undefined) expect(appended.transactionId).toBe(xid);
              xid = appended.transactionId;
              offsets.push(appended.offset);
            }
          }
          await pause(100);
          if (Math.random() < 0.1) {
            await ledger.rollback(tx);
            tally.rolledBack++;
            tally.rolledBackEvents += offsets.length;
            rolledBackOffsets.push(...offsets);
          } else {
            await ledger.commit(tx);
            tally.events += offsets.length;
            committed.push({
              xid: xid as bigint,
              seq: committed.length,
              writer,
              begunMs,
              idMs,
              appendedMs,
              committedMs: now(),
              offsets,
            });
          }
        }
      }),
    );
    const producedAt = Date.now();
    const projectedAtEnd = await projectedCount(sql, view);
    const settled = await settle(sql, view, budget(60_000));
    const caughtUpMs = Date.now() - producedAt;
    if (settled === 'stuck') {
      // The exact interleaving of each event the view will never deliver: its transaction, and the transactions
      // with higher ids that committed before it did.
      const missing = await sql<{ offset: string; decider_id: string; transaction_id: string }[]>`
        SELECT e."offset", e.decider_id, e.transaction_id::text FROM events e
        WHERE NOT EXISTS (SELECT 1 FROM projected p WHERE p.view = ${view} AND p."offset" = e."offset")
        ORDER BY e."offset" LIMIT 5`;
      const locks = await sql`
        SELECT decider_id, "offset", last_offset FROM locks
        WHERE view = ${view} AND decider_id = ANY (${missing.map((row) => row.decider_id)})`;
      const [frontier] =
        await sql`SELECT transaction_id::text, "offset" FROM view_frontiers WHERE view = ${view}`;
      for (const event of missing) {
        const mine = committed.find((c) => c.offsets.includes(Number(event.offset)));
        const overtaken = committed.filter(
          (c) => mine && c.xid > mine.xid && c.committedMs < mine.committedMs,
        );
        console.error(
          `LOST: event ${event.offset} of ${event.decider_id} (xid ${event.transaction_id}), its transaction ` +
            `${JSON.stringify(mine, (_, v) => (typeof v === 'bigint' ? String(v) : v))}; ` +
            `${overtaken.length} transactions with higher ids committed before it, e.g. ` +
            `${JSON.stringify(overtaken.slice(-3), (_, v) => (typeof v === 'bigint' ? String(v) : v))}`,
        );
      }
      console.error(`lock rows: ${JSON.stringify(locks)}; frontier: ${JSON.stringify(frontier)}`);
    }
    await Promise.all(workers.map((worker) => stopWorker(worker)));

    // xid order and commit order disagreed: pairs committed in the opposite order of their ids.
    let inversions = 0;
    let highest = -1n;
    for (const { xid } of committed) {
      if (xid < highest) inversions++;
      else highest = xid;
    }
    const report = await checkInvariants(sql, [view], ledger.acknowledged);
    const [rolledBackSeen] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM projected WHERE "offset" = ANY (${rolledBackOffsets})`;
    expect({ report, rolledBackDelivered: rolledBackSeen?.n }).toEqual({
      report: cleanReport([view]),
      rolledBackDelivered: 0,
    });
    expect(inversions).toBeGreaterThan(0);
    expect(tally.rolledBack).toBeGreaterThan(0);
    console.info(
      `interleaved commits: ${JSON.stringify(tally)}; ${inversions} of ${committed.length} commits came after a ` +
        `commit of a higher transaction id; ${projectedAtEnd} of ${tally.events} events projected when the writers ` +
        `stopped, all ${caughtUpMs} ms later`,
    );
  },
  budget(seconds * 1000 + 120_000),
);
