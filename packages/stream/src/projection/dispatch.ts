/** The one path from a stored event to the handler: decode it with its decider's declaration, then handle it. */
import type { Event } from '@fstore/schema';
import { toStoredEvent } from '@fstore/store';
import type { AnyDeciders, ProjectionContext } from './context.js';
import type { ProjectedEvent, Transaction } from './types.js';

/** Decoding or the handler failed at the `index`-th event of a batch (not the database, not the lease). */
export class HandlerFailure extends Error {
  constructor(
    readonly index: number,
    override readonly cause: unknown,
  ) {
    super('handler failed');
  }
}

export interface Delivery {
  /** The event's place in its batch. */
  index: number;
  attempt: number;
  signal: AbortSignal;
}

/**
 * Hands one event to the handler in `tx`. An event of a decider the projection does not declare is skipped: it is
 * acknowledged with the others, without a call. Throws HandlerFailure.
 */
export async function dispatch(
  context: ProjectionContext,
  row: Event,
  tx: Transaction,
  delivery: Delivery,
): Promise<void> {
  const declared = context.declared.get(row.decider);
  if (!declared) return;
  try {
    const event = (await toStoredEvent(declared, row)) as ProjectedEvent<AnyDeciders>;
    await context.handle(event, tx, {
      view: context.view,
      attempt: delivery.attempt,
      signal: delivery.signal,
    });
  } catch (error) {
    throw new HandlerFailure(delivery.index, error);
  }
}
