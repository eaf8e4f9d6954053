import type { Database } from '@fstore/store';
import { HistoryMissingError } from './errors.js';
import { type MissingHistory, missingHistory, resetView, type ViewSubscription } from './functions.js';
import type { Transaction } from './projection.js';

export interface RebuildOptions extends ViewSubscription {
  view: string;
  /** Where to replay from. Default: the beginning of the log. */
  startAt?: Date;
  /** Empties the read model (DELETE or TRUNCATE), in the same transaction as the reset. */
  reset(tx: Transaction): Promise<void>;
  /**
   * Rebuild even though streams that the view would read left the log since `startAt` (archived, or removed by
   * retention): the view skips them. Default false: such a rebuild throws HistoryMissingError and resets nothing.
   */
  acceptMissingHistory?: boolean;
}

/**
 * Rebuilds a view in one call: in one transaction, every stream's position goes back to `startAt` (reset_view)
 * and the read model is emptied; running workers then replay into it. The positions are reset first: that waits
 * for in-flight acknowledgements and clears every lease, so a worker's batch either committed before (and its
 * writes are emptied here) or fails its acknowledgement after (and rolls back). No event is counted twice.
 * Returns what the view skips because it left the log (see `acceptMissingHistory`).
 */
export async function rebuildProjection(db: Database, options: RebuildOptions): Promise<MissingHistory> {
  return db.transaction(async (tx) => {
    // With `deciders` or `eventTypes` (even null), the view subscribes to that from now on: the same rebuild.
    const subscription =
      options.deciders !== undefined || options.eventTypes !== undefined
        ? { deciders: options.deciders, eventTypes: options.eventTypes }
        : undefined;
    await resetView(tx, options.view, options.startAt ?? new Date(0), subscription);
    // Asked after the reset, of the view as it now reads (its start point and subscription), in the same transaction.
    const missing = await missingHistory(tx, options.view);
    if (missing.archivedStreams + missing.removedStreams > 0 && options.acceptMissingHistory !== true)
      throw new HistoryMissingError(options.view, missing);
    await options.reset(tx as Transaction);
    return missing;
  });
}
