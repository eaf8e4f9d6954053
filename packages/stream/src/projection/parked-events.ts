/**
 * Parked events an operator asked to retry (retry_parked_event) once their stream has moved past them: each is
 * handled alone, out of its stream's order, and leaves the list in the handler's transaction when it succeeds.
 */
import { ackParkedEvent, claimParkedEvent, failParkedEvent } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';
import { dispatch, HandlerFailure, keysFor } from './dispatch.js';

/** Retries the parked event whose retry was asked for longest ago, if any; returns whether there was one. */
export async function handleParkedRetry(context: ProjectionContext): Promise<boolean> {
  const { db, view, stats, logger } = context;
  let offset: number | undefined;
  try {
    await db.transaction(async (tx) => {
      const parked = await claimParkedEvent(tx, view);
      if (!parked) return;
      offset = parked.offset;
      await dispatch(context, parked, tx, {
        index: 0,
        attempt: parked.attempts + 1,
        signal: context.stopping,
        keys: await keysFor(tx, [parked]),
      });
      await ackParkedEvent(tx, view, parked.offset);
      stats.handled++;
      logger.info('parked event retried and handled', { view, offset: parked.offset });
    });
  } catch (error) {
    if (!(error instanceof HandlerFailure) || offset === undefined) throw error;
    stats.failed++;
    await failParkedEvent(db, view, offset, describeError(error.cause));
    logger.error('parked event failed again; it stays parked', {
      view,
      offset,
      error: describeError(error.cause),
    });
  }
  return offset !== undefined;
}
