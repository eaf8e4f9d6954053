/**
 * From leased events to transactions: one batch per stream, and the batches of a poll packed into at most as many
 * transactions as the worker has free slots, so that many small streams do not cost a transaction each.
 */

import { LeaseLostError } from '../errors.js';
import { ackLeases, type LeasedEvent } from '../functions.js';
import { type Batch, processBatch } from './batch.js';
import type { ProjectionContext } from './context.js';
import { dispatch } from './dispatch.js';
import { guardedTransaction } from './guarded-transaction.js';
import { keepLeases } from './lease-keeper.js';

/** The leased events as one batch per lease (per stream), each in offset order. */
export function groupByStream(view: string, rows: readonly LeasedEvent[]): Batch[] {
  const batches = new Map<string, Batch>();
  for (const row of rows) {
    let batch = batches.get(row.leaseId);
    if (!batch) {
      batch = { view, deciderId: row.deciderId, leaseId: row.leaseId, attempts: row.attempts, rows: [] };
      batches.set(row.leaseId, batch);
    }
    batch.rows.push(row);
  }
  for (const batch of batches.values()) batch.rows.sort((a, b) => a.offset - b.offset);
  return [...batches.values()];
}

/** Deals the batches round-robin into at most `slots` transactions. */
export function transactionGroups(batches: readonly Batch[], slots: number): Batch[][] {
  const groups: Batch[][] = Array.from({ length: Math.min(slots, batches.length) }, () => []);
  for (const [index, batch] of batches.entries()) groups[index % groups.length]?.push(batch);
  return groups;
}

/** Handles one transaction's batches: a batch alone, or several together (processGroup). */
export function processTransaction(context: ProjectionContext, group: readonly Batch[]): Promise<void> {
  return group.length === 1 ? processBatch(context, group[0] as Batch) : processGroup(context, group);
}

/**
 * Handles several streams' batches in one transaction, acknowledged in one statement. If anything fails, all of it
 * rolls back and each batch runs again on its own, which reports failures and lost leases stream by stream.
 */
async function processGroup(context: ProjectionContext, group: readonly Batch[]): Promise<void> {
  const { view, stats, metrics, attributes } = context;
  const started = Date.now();
  const leases = keepLeases(context, group);
  let failed = false;
  try {
    await guardedTransaction(
      context,
      async (tx, transactionMarker) => {
        for (const batch of group) {
          for (const [index, row] of batch.rows.entries()) {
            if (leases.signal.aborted) throw new LeaseLostError(view, batch.deciderId, batch.leaseId);
            await dispatch(context, row, tx, { index, attempt: batch.attempts + 1, signal: leases.signal });
          }
        }
        await ackLeases(
          tx,
          view,
          group.map((batch) => ({ ...batch, offset: (batch.rows.at(-1) as LeasedEvent).offset })),
          { transactionMarker },
        );
      },
      () => leases.expire(),
    );
    const handled = group.reduce((sum, batch) => sum + batch.rows.length, 0);
    stats.handled += handled;
    metrics?.count('fstore.projection.handled', handled, attributes);
    metrics?.record('fstore.projection.batch_ms', Date.now() - started, attributes);
  } catch {
    failed = true;
  } finally {
    leases.stop();
  }
  if (failed) for (const batch of group) await processBatch(context, batch);
}
