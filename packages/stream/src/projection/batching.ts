/**
 * From leased events to transactions: one batch per stream, and the batches of a poll packed into at most as many
 * transactions as the worker has free slots, so that many small streams do not cost a transaction each (nor an
 * acknowledgement, nor a lease renewal each: a group has one of each).
 */

import { LeaseLostError } from '../errors.js';
import { ackLeases, type LeasedEvent } from '../functions.js';
import { type Batch, processBatch } from './batch.js';
import type { ProjectionContext } from './context.js';
import { dispatch, HandlerFailure, keysFor } from './dispatch.js';
import { guardedTransaction } from './guarded-transaction.js';
import { keepLeases } from './lease-keeper.js';

/** The leased events as one batch per lease (per stream), each in offset order. */
export function groupByStream(view: string, rows: readonly LeasedEvent[]): Batch[] {
  const batches = new Map<string, Batch>();
  // lease_events returns rows in offset order: a batch is sorted only if they ever come otherwise.
  let unordered = false;
  for (const row of rows) {
    let batch = batches.get(row.leaseId);
    if (!batch) {
      batch = { view, deciderId: row.deciderId, leaseId: row.leaseId, attempts: row.attempts, rows: [] };
      batches.set(row.leaseId, batch);
    } else if ((batch.rows.at(-1) as LeasedEvent).offset > row.offset) unordered = true;
    batch.rows.push(row);
  }
  if (unordered) for (const batch of batches.values()) batch.rows.sort((a, b) => a.offset - b.offset);
  return [...batches.values()];
}

/**
 * Deals the batches round-robin into at most `slots` transactions, each in stream order: its acknowledgement (and
 * lease renewal) then takes the lock rows in the order advance_view takes them, so the two never deadlock.
 */
export function transactionGroups(batches: readonly Batch[], slots: number): Batch[][] {
  const groups: Batch[][] = Array.from({ length: Math.min(slots, batches.length) }, () => []);
  const inStreamOrder = [...batches].sort((a, b) =>
    a.deciderId < b.deciderId ? -1 : a.deciderId > b.deciderId ? 1 : 0,
  );
  for (const [index, batch] of inStreamOrder.entries()) groups[index % groups.length]?.push(batch);
  return groups;
}

/**
 * Handles a slot's batches: a batch alone, or several together (processGroup). A stream whose delivery failed
 * before (a retry) runs alone first: a poison event must not roll a whole group back at every attempt.
 */
export async function processTransaction(
  context: ProjectionContext,
  group: readonly Batch[],
  regrouped = false,
): Promise<void> {
  if (group.length === 1) return processBatch(context, group[0] as Batch);
  const retried = group.filter((batch) => batch.attempts > 0);
  if (retried.length === 0) return processGroup(context, group, regrouped);
  for (const batch of retried) await processBatch(context, batch);
  const others = group.filter((batch) => batch.attempts === 0);
  if (others.length > 0) await processTransaction(context, others, regrouped);
}

/** The handler failed at an event of the group's `batch`-th batch. */
class GroupHandlerFailure extends Error {
  constructor(readonly batch: number) {
    super('handler failed in a group');
  }
}

/**
 * Handles several streams' batches in one transaction, acknowledged in one statement. If anything fails, all of it
 * rolls back. When a handler failed, its batch runs again on its own (which commits the events before the failing
 * one and reports it) and the other batches run again as a group; a second failure in that group, or any other
 * failure (a lost lease, the database), sends each batch of the group back on its own, which reports failures and
 * lost leases stream by stream.
 */
async function processGroup(
  context: ProjectionContext,
  group: readonly Batch[],
  regrouped = false,
): Promise<void> {
  const { view, stats, metrics, attributes } = context;
  const started = Date.now();
  const leases = keepLeases(context, group);
  let failure: unknown;
  try {
    await guardedTransaction(
      context,
      async (tx, transactionMarker) => {
        const keys = await keysFor(
          tx,
          group.flatMap((batch) => batch.rows),
        );
        for (const [position, batch] of group.entries()) {
          for (const [index, row] of batch.rows.entries()) {
            if (leases.signal.aborted) throw new LeaseLostError(view, batch.deciderId, batch.leaseId);
            try {
              await dispatch(context, row, tx, {
                index,
                attempt: batch.attempts + 1,
                signal: leases.signal,
                keys,
              });
            } catch (error) {
              throw error instanceof HandlerFailure ? new GroupHandlerFailure(position) : error;
            }
          }
        }
        await ackLeases(
          tx,
          view,
          group.map((batch) => ({
            deciderId: batch.deciderId,
            leaseId: batch.leaseId,
            offset: (batch.rows.at(-1) as LeasedEvent).offset,
          })),
          { transactionMarker },
        );
        return group.reduce((sum, batch) => sum + batch.rows.length, 0);
      },
      () => leases.expire(),
    );
    const handled = group.reduce((sum, batch) => sum + batch.rows.length, 0);
    stats.handled += handled;
    metrics.count('fstore.projection.handled', handled, attributes);
    metrics.record('fstore.projection.batch_ms', Date.now() - started, attributes);
    return;
  } catch (error) {
    failure = error;
  } finally {
    leases.stop();
  }
  if (failure instanceof GroupHandlerFailure && !regrouped && !context.stopping.aborted) {
    const at = failure.batch;
    const failed = group[at] as Batch;
    const others = group.filter((_, position) => position !== at);
    await processBatch(context, failed);
    if (others.length > 0) await processTransaction(context, others, true);
    return;
  }
  for (const batch of group) await processBatch(context, batch);
}
