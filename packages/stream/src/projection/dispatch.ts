/** The one path from a stored event to the handler: decode it with its decider's declaration, then handle it. */
import { type Event, views } from '@fstore/schema';
import { type SubjectKeys, subjectKeysFor, toStoredEvent } from '@fstore/store';
import { decodeMetadata, inSpan, type SpanOptions, tracing } from '@fstore/store/internal';
import { eq } from 'drizzle-orm';
import { SubscriptionMismatchError } from '../errors.js';
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
  /** The keys of the personal fields of the transaction's events (`keysFor`), read once for all of them. */
  keys: SubjectKeys;
}

/**
 * The keys of the personal fields of `rows`, read in their transaction once for all of them: no query when none
 * has any.
 */
export async function keysFor(tx: Transaction, rows: readonly Event[]): Promise<SubjectKeys> {
  return subjectKeysFor(
    tx,
    rows.map((row) => row.data),
  );
}

/**
 * Hands one event to the handler in `tx`. An event of a decider the projection does not declare reaches it only from
 * a view that subscribes to every decider (registered by fstore-sql's signatures), or from one whose subscription
 * was widened while this worker ran: it is skipped (acknowledged with the others, without a call) in the first
 * case, and refused with SubscriptionMismatchError in the second, so that a newer worker gets it. Throws
 * HandlerFailure.
 */
export async function dispatch(
  context: ProjectionContext,
  row: Event,
  tx: Transaction,
  delivery: Delivery,
): Promise<void> {
  const declared = context.declared.get(row.decider);
  if (!declared) {
    const [view] = await tx
      .select({ deciders: views.subscribedDeciders })
      .from(views)
      .where(eq(views.view, context.view));
    const subscribed = view?.deciders;
    if (subscribed?.includes(row.decider))
      throw new SubscriptionMismatchError(context.view, subscribed, [row.decider]);
    return;
  }
  try {
    // With OpenTelemetry: a span per call, in the batch's trace, linked to the trace that appended the event.
    if (tracing())
      await inSpan(
        `project ${row.event}`,
        () => handlerSpan(context, row, delivery),
        () => handleEvent(context, declared, row, tx, delivery),
      );
    else await handleEvent(context, declared, row, tx, delivery);
  } catch (error) {
    throw new HandlerFailure(delivery.index, error);
  }
}

/** Decodes the event (with the keys of its personal fields, if it has any) and hands it to the handler. */
async function handleEvent(
  context: ProjectionContext,
  declared: AnyDeciders[number],
  row: Event,
  tx: Transaction,
  delivery: Delivery,
): Promise<void> {
  const event = (await toStoredEvent(declared, row, true, delivery.keys)) as ProjectedEvent<AnyDeciders>;
  await context.handle(event, tx, { view: context.view, attempt: delivery.attempt, signal: delivery.signal });
}

/** A handler call's span: OpenTelemetry's messaging conventions, linked to the append that wrote the event. */
function handlerSpan(context: ProjectionContext, row: Event, delivery: Delivery): SpanOptions {
  const metadata = decodeMetadata(row.metadata);
  return {
    kind: 'consumer',
    links: [metadata?.traceparent],
    attributes: {
      'messaging.system': 'fstore',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'project',
      'messaging.destination.name': context.view,
      'messaging.message.id': row.eventId,
      'messaging.message.conversation_id': metadata?.correlationId,
      'fstore.view': context.view,
      'fstore.decider': row.decider,
      'fstore.decider_id': row.deciderId,
      'fstore.event_type': row.event,
      'fstore.offset': row.offset,
      'fstore.attempt': delivery.attempt,
    },
  };
}
