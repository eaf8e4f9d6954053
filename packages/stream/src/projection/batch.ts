/**
 * One stream's batch: its events handled in order in one transaction and acknowledged in it. When the handler
 * fails at an event, the events before it commit and that one is reported (retried later, or parked).
 */
import { isTransientDatabaseError } from '@fstore/store';
import { LeaseLostError, SubscriptionMismatchError } from '../errors.js';
import { ackEvents, failEvent, type LeasedEvent, releaseLease } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';
import { dispatch, HandlerFailure, keysFor } from './dispatch.js';
import { guardedTransaction } from './guarded-transaction.js';
import { keepLeases, type LeaseKeeper } from './lease-keeper.js';

/** The events leased from one stream, in offset order, under one lease. */
export interface Batch {
  view: string;
  deciderId: string;
  leaseId: string;
  /** Failed deliveries of the first event so far. */
  attempts: number;
  rows: LeasedEvent[];
}

/** Reruns of a batch rolled back by a serialization failure or a deadlock before it counts as failed. */
const maxTransientReruns = 5;

export async function processBatch(context: ProjectionContext, batch: Batch): Promise<void> {
  const { view, stats, metrics, attributes, logger } = context;
  const started = Date.now();
  const lease = keepLeases(context, [batch]);
  try {
    let upTo = batch.rows.length;
    let failure: HandlerFailure | undefined;
    let reruns = 0;
    // Commit what succeeds; when a handler throws at event i, redo [0, i) (rolled back with it) and report i.
    for (;;) {
      try {
        if (upTo > 0) await commit(context, batch, upTo, failure === undefined, lease);
        break;
      } catch (error) {
        // A serialization failure or a deadlock asks for the transaction to run again: at once, under the same
        // lease, and not as a failed delivery (contention alone must not park events).
        const cause = error instanceof HandlerFailure ? error.cause : error;
        if (isTransientDatabaseError(cause) && reruns < maxTransientReruns && !lease.signal.aborted) {
          reruns++;
          metrics.count('fstore.projection.reruns', 1, attributes);
          logger.warn(
            'batch rolled back by the database (serialization failure or deadlock); running it again',
            {
              view,
              deciderId: batch.deciderId,
              rerun: reruns,
              error: describeError(cause),
            },
          );
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * reruns));
          continue;
        }
        if (!(error instanceof HandlerFailure)) throw error;
        failure = error;
        upTo = error.index;
      }
    }
    if (upTo > 0) {
      stats.handled += upTo;
      metrics.count('fstore.projection.handled', upTo, attributes);
    }
    if (failure) await reportFailure(context, batch, failure);
    metrics.record('fstore.projection.batch_ms', Date.now() - started, attributes);
  } catch (error) {
    if (error instanceof LeaseLostError && context.stopping.aborted) {
      // Stopping: the batch was abandoned and rolled back; hand the stream to another worker now.
      await releaseLease(context.db, batch).catch(() => {});
      logger.info('stopping: batch abandoned, lease released', { view, deciderId: batch.deciderId });
    } else if (error instanceof SubscriptionMismatchError) {
      // Nothing was acknowledged: hand the stream back at once, and stop leasing (worker.ts reads context.fatal).
      context.fatal.error = error;
      await releaseLease(context.db, batch).catch(() => {});
      logger.error('the view subscribes to a decider this worker does not declare: it stops leasing', {
        view,
        deciderId: batch.deciderId,
        error: describeError(error),
      });
    } else if (error instanceof LeaseLostError) {
      stats.leaseLost++;
      metrics.count('fstore.projection.lease_lost', 1, attributes);
      logger.warn('lease lost; the batch was rolled back', { view, deciderId: batch.deciderId });
    } else {
      // The database or the connection, not the handler: the lease expires and the batch comes again.
      logger.error('batch failed outside the handler', {
        view,
        deciderId: batch.deciderId,
        error: describeError(error),
      });
    }
  } finally {
    lease.stop();
  }
}

/** Handles rows [0, upTo) of a batch in one transaction and acknowledges the last of them. */
async function commit(
  context: ProjectionContext,
  batch: Batch,
  upTo: number,
  release: boolean,
  lease: LeaseKeeper,
): Promise<void> {
  await guardedTransaction(
    context,
    async (tx, transactionMarker) => {
      const keys = await keysFor(tx, batch.rows.slice(0, upTo));
      for (let index = 0; index < upTo; index++) {
        if (lease.signal.aborted) throw new LeaseLostError(batch.view, batch.deciderId, batch.leaseId);
        await dispatch(context, batch.rows[index] as LeasedEvent, tx, {
          index,
          attempt: index === 0 ? batch.attempts + 1 : 1,
          signal: lease.signal,
          keys,
        });
      }
      const last = batch.rows[upTo - 1] as LeasedEvent;
      await ackEvents(tx, batch, last.offset, { release, transactionMarker });
      return upTo;
    },
    () => lease.expire(),
  );
}

/** Reports the event the handler failed at: retried after a jittered backoff, or parked after maxAttempts. */
async function reportFailure(
  context: ProjectionContext,
  batch: Batch,
  failure: HandlerFailure,
): Promise<void> {
  const { view, stats, metrics, attributes, logger, backoff } = context;
  const row = batch.rows[failure.index] as LeasedEvent;
  const attempt = (failure.index === 0 ? batch.attempts : 0) + 1;
  const ceiling = Math.min(backoff.maxMs, backoff.initialMs * 2 ** (attempt - 1));
  const retryMs = ceiling / 2 + (Math.random() * ceiling) / 2;
  stats.failed++;
  metrics.count('fstore.projection.failed', 1, attributes);
  const outcome = await failEvent(context.db, batch, {
    offset: row.offset,
    error: describeError(failure.cause),
    retryMs,
    maxAttempts: context.maxAttempts,
    stopStream: context.onParked === 'stop',
  });
  if (outcome === 'retry') {
    logger.warn('handler failed; will retry', {
      view,
      deciderId: batch.deciderId,
      offset: row.offset,
      attempt,
      retryInMs: Math.round(retryMs),
      error: describeError(failure.cause),
    });
  } else {
    stats.parked++;
    metrics.count('fstore.projection.parked', 1, attributes);
    logger.error(
      `handler failed ${attempt} times; event parked${outcome === 'stopped' ? ', stream stopped' : ''}`,
      { view, deciderId: batch.deciderId, offset: row.offset, error: describeError(failure.cause) },
    );
  }
}
