import type { Database } from '@fstore/store';
import { resetView, type ViewSubscription } from './functions.js';
import type { Transaction } from './projection.js';

export interface RebuildOptions extends ViewSubscription {
  view: string;
  /** Where to replay from. Default: the beginning of the log. */
  startAt?: Date;
  /** Empties the read model (DELETE or TRUNCATE), in the same transaction as the reset. */
  reset(tx: Transaction): Promise<void>;
}

/**
 * Rebuilds a view in one call: in one transaction, every stream's position goes back to `startAt` (reset_view)
 * and the read model is emptied; running workers then replay into it. The positions are reset first: that waits
 * for in-flight acknowledgements and clears every lease, so a worker's batch either committed before (and its
 * writes are emptied here) or fails its acknowledgement after (and rolls back). No event is counted twice.
 */
export async function rebuildProjection(db: Database, options: RebuildOptions): Promise<void> {
  await db.transaction(async (tx) => {
    // With `deciders` or `eventTypes` (even null), the view subscribes to that from now on: the same rebuild.
    const subscription =
      options.deciders !== undefined || options.eventTypes !== undefined
        ? { deciders: options.deciders, eventTypes: options.eventTypes }
        : undefined;
    await resetView(tx, options.view, options.startAt ?? new Date(0), subscription);
    await options.reset(tx as Transaction);
  });
}
