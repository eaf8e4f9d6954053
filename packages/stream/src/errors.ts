import { FstoreError } from '@fstore/store';
import { databaseError } from '@fstore/store/internal';

/**
 * The lease on a stream is no longer held: it expired and another consumer took the stream, or the view was
 * reset. The work done under it did not commit (the acknowledgement refused it, and its transaction rolled back).
 */
export class LeaseLostError extends FstoreError {
  override name = 'LeaseLostError';
  constructor(
    readonly view: string,
    readonly deciderId: string,
    readonly leaseId: string,
    options?: ErrorOptions,
  ) {
    super(`the lease ${leaseId} on stream ${deciderId} of view ${view} is no longer held`, options);
  }
}

/**
 * An acknowledgement that was to run in a worker's batch transaction ran somewhere else: that transaction is gone
 * (its session ended) and the driver sent the statement on another session. Nothing was acknowledged; the batch is
 * delivered again once its lease expires.
 */
export class TransactionLostError extends FstoreError {
  override name = 'TransactionLostError';
  constructor(
    readonly view: string,
    options?: ErrorOptions,
  ) {
    super(
      `an acknowledgement for view ${view} ran outside its batch's transaction (its session ended): nothing was acknowledged`,
      options,
    );
  }
}

/**
 * A projection declares deciders that its registered view does not subscribe to: their events would never reach
 * it. Rebuild the view with the new subscription (`rebuildProjection({ view, deciders, reset })`, or
 * `reset_view(view, start_at, deciders, event_types)` in SQL), which replays it from its start.
 */
export class SubscriptionMismatchError extends FstoreError {
  override name = 'SubscriptionMismatchError';
  constructor(
    readonly view: string,
    readonly subscribed: readonly string[],
    readonly missing: readonly string[],
  ) {
    super(
      `view ${view} subscribes to deciders ${subscribed.join(', ')}, but the projection also reads ${missing.join(', ')}: rebuild the view with the new subscription (rebuildProjection with deciders)`,
    );
  }
}

/** Maps a failure of the lease functions to LeaseLostError by SQLSTATE and constraint; anything else as given. */
export function toLeaseError(error: unknown, view: string, deciderId: string, leaseId: string): unknown {
  const db = databaseError(error);
  if (db?.code === '55P03' && db.constraint === 'locks_lease_held') {
    return new LeaseLostError(view, deciderId, leaseId, { cause: error });
  }
  return error;
}
