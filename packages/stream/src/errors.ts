import { FstoreError } from '@fstore/store';
import { databaseError } from '@fstore/store/internal';
import type { MissingHistory } from './functions.js';

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

/**
 * A rebuild would start before streams that left the log (archived, or removed by retention since): the view would
 * skip them. Nothing was reset. Rebuild from a later start point, or pass `acceptMissingHistory: true` to rebuild
 * without them knowingly (`missing` says how much).
 */
export class HistoryMissingError extends FstoreError {
  override name = 'HistoryMissingError';
  constructor(
    readonly view: string,
    readonly missing: MissingHistory,
  ) {
    super(
      `rebuilding view ${view} would skip ${missing.archivedStreams} archived streams (${missing.archivedEvents} events) and ${missing.removedStreams} streams removed by retention (${missing.removedEvents} events): rebuild from a later start point, or pass acceptMissingHistory: true`,
    );
  }
}

/** A wait for a view (`waitForView`) outlived its timeout: the view has not handled the event yet. */
export class ViewWaitTimeoutError extends FstoreError {
  override name = 'ViewWaitTimeoutError';
  constructor(
    readonly view: string,
    readonly deciderId: string,
    readonly offset: number,
    readonly timeoutMs: number,
  ) {
    super(`view ${view} had not handled stream ${deciderId} up to offset ${offset} after ${timeoutMs} ms`);
  }
}

/**
 * The event a wait was for is parked, or an earlier event of its stream is and stopped the stream: the view will not
 * get there until an operator retries or discards it. `parkedOffset` and `parkedError` name it.
 */
export class EventParkedError extends FstoreError {
  override name = 'EventParkedError';
  constructor(
    readonly view: string,
    readonly deciderId: string,
    readonly parkedOffset: number,
    readonly parkedError: string,
  ) {
    super(`view ${view} parked the event at offset ${parkedOffset} of stream ${deciderId}: ${parkedError}`);
  }
}

/**
 * A wait for a view that cannot end: the view does not exist (`no-view`), the stream has no event at that offset
 * (`no-event`), or the view does not subscribe to the stream's decider (`not-subscribed`).
 */
export class ViewPositionError extends FstoreError {
  override name = 'ViewPositionError';
  constructor(
    readonly reason: 'no-view' | 'no-event' | 'not-subscribed',
    readonly view: string,
    readonly deciderId: string,
    readonly offset: number,
    options?: ErrorOptions,
  ) {
    super(
      reason === 'no-view'
        ? `there is no view ${view}`
        : reason === 'no-event'
          ? `stream ${deciderId} has no event at offset ${offset}`
          : `view ${view} does not subscribe to the decider of stream ${deciderId}`,
      options,
    );
  }
}

/** Maps a refusal of view_reached to ViewPositionError, by SQLSTATE and constraint; anything else as given. */
export function toViewPositionError(
  error: unknown,
  view: string,
  deciderId: string,
  offset: number,
): unknown {
  const db = databaseError(error);
  if (db?.code === 'P0002')
    return new ViewPositionError(
      db.constraint === 'events_pkey' ? 'no-event' : 'no-view',
      view,
      deciderId,
      offset,
      {
        cause: error,
      },
    );
  if (db?.code === '22023' && db.constraint === 'views_subscription')
    return new ViewPositionError('not-subscribed', view, deciderId, offset, { cause: error });
  return error;
}

/** Maps a failure of the lease functions to LeaseLostError by SQLSTATE and constraint; anything else as given. */
export function toLeaseError(error: unknown, view: string, deciderId: string, leaseId: string): unknown {
  const db = databaseError(error);
  if (db?.code === '55P03' && db.constraint === 'locks_lease_held') {
    return new LeaseLostError(view, deciderId, leaseId, { cause: error });
  }
  return error;
}
