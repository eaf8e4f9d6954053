/** Keeps a running batch's leases: renews them every third of leaseSeconds and says when one is lost. */
import { renewLease } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';

export interface LeaseKeeper {
  /** Aborted when a lease is lost, the worker stops, or the keeper expires: the batch must not commit. */
  readonly signal: AbortSignal;
  /** Stops renewing: the batch is over. */
  stop(): void;
  /** Stops renewing and aborts the signal: the batch outlived maxBatchSeconds and its session is being ended. */
  expire(): void;
}

export function keepLeases(
  context: ProjectionContext,
  leases: readonly { view: string; deciderId: string; leaseId: string }[],
): LeaseKeeper {
  const { db, view, leaseSeconds, logger, stopping } = context;
  const lost = new AbortController();
  const onStopping = () => lost.abort();
  if (stopping.aborted) lost.abort();
  else stopping.addEventListener('abort', onStopping);
  const renewal = setInterval(
    () => {
      for (const lease of leases) {
        renewLease(db, lease, leaseSeconds)
          .then((held) => {
            if (!held) lost.abort();
          })
          .catch((error) =>
            logger.warn('lease renewal failed', {
              view,
              deciderId: lease.deciderId,
              error: describeError(error),
            }),
          );
      }
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
