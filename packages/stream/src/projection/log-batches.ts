/**
 * Log batches: while a view is behind, a worker takes the next stretch of the log for it (claim_log_batch) and
 * handles it in the same transaction, so new streams cost no lease and no acknowledgement each. One consumer of a
 * view holds its frontier at a time; streams with work in their lock rows (leases, retries, stopped streams) keep
 * going through leases, a batch reading their events into those rows. Slow handlers pause it: leases let workers
 * share the work.
 */
import { SubscriptionMismatchError } from '../errors.js';
import { claimLogBatch } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';
import { dispatch, HandlerFailure, keysFor } from './dispatch.js';
import { guardedTransaction } from './guarded-transaction.js';

/**
 * Events a batch takes at most. Each batch pays a fixed cost (its transaction, the claim's looks at the frontier and
 * the horizon): 4,000 events a batch caught up 23% faster than 1,000 (bench C1). A worker's first batch is small
 * (firstBatchEvents), so that slow handlers are found before they hold the frontier for long. A full batch then
 * grows the next as far as the time it took says fits in growUnderMs (at most eightfold, so that a worker that gets
 * the frontier after another reaches full batches in three), and one past shrinkOverMs halves it: a batch stays
 * well inside its time limit.
 */
export const maxBatchEvents = 4000;
const firstBatchEvents = 50;
const growUnderMs = 500;
const maxGrowth = 8;
const shrinkOverMs = 2000;
/**
 * A batch holds the view's frontier: no other consumer takes new events meanwhile. One that runs longer than this
 * (a hung or very slow handler) is ended, rolled back and paused, and its events go through leases, where a slow
 * stream holds up only itself.
 */
const batchSeconds = 5;
/**
 * Handlers slower than this per event make batches pause: one consumer at a time would handle the backlog. A handler
 * that writes its read model in the transaction takes well under it (even on a busy machine); one that waits on
 * something outside the database does not, and is better shared out through leases.
 */
const slowEventMs = 5;
const slowPauseMs = 30_000;
/** After a failed batch, its events go through leases (which retry or park them) for a while. */
const failurePauseMs = 5_000;
/**
 * A consumer that finds the frontier held by another, with events waiting, leaves it to that holder this long. Every
 * batch ends its transaction, and a claim that came in between would take the frontier over and start again with
 * small batches: with 8 consumers polling, that happened a few times a second (bench S1). A holder that stops or
 * dies is replaced within it; a caught-up holder takes the next events itself.
 */
const heldPauseMs = 1_000;

export interface LogBatches {
  /** Whether batches are in use now (not paused after a failure or slow handlers). */
  readonly active: boolean;
  /**
   * Whether the log may hold something past the view's frontier: a batch is worth a transaction. Not for a while
   * after another consumer was found holding the frontier with events waiting.
   */
  readonly pending: boolean;
  /** Whether the last batch took as many events as it asked for: the log most likely holds more right after it. */
  readonly full: boolean;
  /** The log moved (a wake-up, or a poll without wake-ups). */
  logMoved(): void;
  /**
   * Takes one batch and handles it; resolves to the events handled. When none came, stays pending only if the batch
   * moved the frontier all the same.
   */
  run(): Promise<number>;
}

export function logBatches(context: ProjectionContext): LogBatches | undefined {
  if (!context.logBatches) return undefined;
  const { view, logger, stats, metrics, attributes } = context;
  let pausedUntil = 0;
  let heldUntil = 0;
  let pending = true;
  let size = firstBatchEvents;
  let full = false;

  async function claimAndHandle(): Promise<{ handled: number; moved: boolean; failed: boolean }> {
    let handled = 0;
    let moved = false;
    let outlived = false;
    const abandon = new AbortController();
    const started = performance.now();
    // Handlers' time alone decides whether they are slow: the claim's own cost grows with the log, not with them.
    let handlersStarted = started;
    try {
      await guardedTransaction(
        context,
        async (tx) => {
          const { events, frontierMoved, frontierHeld } = await claimLogBatch(tx, view, size);
          moved = frontierMoved;
          if (frontierHeld) heldUntil = Date.now() + heldPauseMs;
          handlersStarted = performance.now();
          const keys = await keysFor(tx, events);
          for (const [index, row] of events.entries()) {
            if (abandon.signal.aborted)
              throw new Error('log batch abandoned: stopping, or past its time limit');
            await dispatch(context, row, tx, { index, attempt: 1, signal: abandon.signal, keys });
          }
          handled = events.length;
          return handled;
        },
        () => {
          outlived = !context.stopping.aborted;
          abandon.abort();
        },
        // Stopping ends the batch's session at once: a hung handler must not keep the frontier from other workers.
        { seconds: Math.min(batchSeconds, context.leaseSeconds), end: context.stopping },
      );
    } catch (error) {
      // A batch that outlived its time limit had slow (or hung) handlers: the same pause as slow ones, so that the
      // next batch does not roll back the same way a few seconds later.
      full = false;
      pausedUntil = Date.now() + (outlived ? slowPauseMs : failurePauseMs);
      size = firstBatchEvents;
      if (error instanceof SubscriptionMismatchError) {
        // Rolled back, nothing recorded: stop leasing (worker.ts reads context.fatal).
        context.fatal.error = error;
        logger.error('the view subscribes to a decider this worker does not declare: it stops leasing', {
          view,
          error: describeError(error),
        });
      } else {
        const cause = error instanceof HandlerFailure ? error.cause : error;
        logger.warn(
          outlived
            ? 'a log batch outlived its time limit and was rolled back; leases instead of log batches for a while'
            : 'a log batch failed and was rolled back; its events go through leases, which retry them',
          { view, pauseMs: pausedUntil - Date.now(), error: describeError(cause) },
        );
      }
      return { handled: 0, moved: false, failed: true };
    }
    full = handled >= size;
    if (handled > 0) {
      stats.handled += handled;
      metrics.count('fstore.projection.handled', handled, attributes);
      const ended = performance.now();
      const took = ended - started;
      metrics.record('fstore.projection.batch_ms', took, attributes);
      const handling = ended - handlersStarted;
      if (handled >= 10 && handling / handled > slowEventMs) {
        pausedUntil = Date.now() + slowPauseMs;
        size = firstBatchEvents;
        logger.info('handlers are slow: leases instead of log batches for a while', {
          view,
          msPerEvent: Math.round((handling / handled) * 100) / 100,
        });
      } else if (took > shrinkOverMs) size = Math.max(Math.floor(size / 2), firstBatchEvents);
      else if (handled >= size) {
        const growth = Math.min(Math.floor(growUnderMs / Math.max(took, 1)), maxGrowth);
        if (growth >= 2) size = Math.min(size * growth, maxBatchEvents);
      }
    }
    return { handled, moved, failed: false };
  }

  return {
    get active() {
      return Date.now() >= pausedUntil;
    },
    get pending() {
      return pending && Date.now() >= heldUntil;
    },
    get full() {
      return full;
    },
    logMoved() {
      pending = true;
    },
    async run() {
      const { handled, moved, failed } = await claimAndHandle();
      // Nothing came: the log has more only if the frontier moved (past events for leases or for no subscribed
      // stream). Nothing new waits for the next wake-up or poll; another consumer holding the frontier, longer.
      if (!failed && handled === 0) pending = moved;
      return handled;
    },
  };
}
