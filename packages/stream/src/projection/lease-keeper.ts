/**
 * Keeps the leases of a running transaction (one stream's batch, or a group of many small streams): one timer for
 * them all, renewing every lease in one statement every third of leaseSeconds, and a signal for when one is lost.
 */
import { renewLeases } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';

export interface LeaseKeeper {
  /** Aborted when a lease is lost, the worker stops, or the keeper expires: the batch must not commit. */
  readonly signal: AbortSignal;
  /** Stops renewing: the batch is over. */
  stop(): void;
  /** Stops renewing and aborts the signal: the batch outlived maxBatchSeconds and its session is being ended. */
  expire(): void;
}

/**
 * Keeps `leases`, given in the order the transaction acknowledges them (renewal and acknowledgement then take the
 * lock rows in the same order and cannot deadlock).
 */
export function keepLeases(
  context: ProjectionContext,
  leases: readonly { deciderId: string; leaseId: string }[],
): LeaseKeeper {
  const { db, view, leaseSeconds, logger, stopping } = context;
  const lost = new AbortController();
  const onStopping = () => lost.abort();
  if (stopping.aborted) lost.abort();
  else stopping.addEventListener('abort', onStopping);
  // A renewal still waiting for its answer is not sent again: statements must not pile up on a slow database.
  let renewing = false;
  const renewal = setInterval(
    () => {
      if (renewing || lost.signal.aborted) return;
      renewing = true;
      renewLeases(db, view, leases, leaseSeconds)
        .then((gone) => {
          if (gone.length > 0) lost.abort();
        })
        .catch((error) =>
          logger.warn('lease renewal failed', {
            view,
            deciderId: leases.length === 1 ? leases[0]?.deciderId : `${leases.length} streams`,
            error: describeError(error),
          }),
        )
        .finally(() => {
          renewing = false;
        });
    },
    Math.max(250, (leaseSeconds * 1000) / 3),
  );
  const stop = () => {
    clearInterval(renewal);
    stopping.removeEventListener('abort', onStopping);
  };
  return {
    signal: lost.signal,
    stop,
    expire() {
      stop();
      lost.abort();
    },
  };
}
