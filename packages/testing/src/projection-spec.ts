/**
 * Projection specifications: given these events, the read model holds this. The events are appended for real, and
 * the projection runs as it does in production (a worker, its transactions and acknowledgements) on the database
 * you give: PGlite in process, or PostgreSQL. `drain()` returns once the view has handled every event given so far:
 * it waits on each stream's position (waitForView), never on time, so it is deterministic.
 */
import {
  type AppendInput,
  createEventStore,
  type DeciderEvents,
  type EventDefinitions,
  type EventOf,
  positionAfter,
  type StreamPosition,
} from '@fstore/store';
import { createProjection, type ProjectionOptions, waitForView } from '@fstore/stream';

/** An event of any of the deciders (the union of their events). */
export type EventOfAny<TDeciders extends readonly DeciderEvents<EventDefinitions>[]> =
  TDeciders[number] extends infer TDecider
    ? TDecider extends DeciderEvents<EventDefinitions>
      ? EventOf<TDecider>
      : never
    : never;

export interface ProjectionSpecification<TDeciders extends readonly DeciderEvents<EventDefinitions>[]> {
  /**
   * Appends `events` to stream `deciderId` after its last event, as one command. Their decider is the declared one
   * whose events they are (`decider` says which, when two declare the same event type). Chainable.
   */
  given(
    deciderId: string,
    events: readonly AppendInput<EventOfAny<TDeciders>>[],
    options?: { decider?: TDeciders[number] },
  ): Promise<ProjectionSpecification<TDeciders>>;
  /** Where each stream given so far ends. */
  readonly positions: readonly StreamPosition[];
  /**
   * Runs the projection until its view has handled every event given so far (each stream up to its position), then
   * stops it. Rejects if an event is parked (EventParkedError) or after `timeoutMs` (default 30 s).
   */
  drain(options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * Specifies a projection: the options are createProjection's (db, view, events, handle, …), the db being the one
 * the test reads the read model from.
 */
export function projectionSpec<const TDeciders extends readonly DeciderEvents<EventDefinitions>[]>(
  options: ProjectionOptions<TDeciders>,
): ProjectionSpecification<TDeciders> {
  const positions = new Map<string, StreamPosition>();
  const registered = new Set<string>();
  const specification: ProjectionSpecification<TDeciders> = {
    get positions() {
      return [...positions.values()];
    },
    async given(deciderId, events, { decider } = {}) {
      const types = (events as readonly { type: string }[]).map((e) => e.type);
      const declared =
        decider ??
        options.events.find((candidate) => types.every((type) => Object.hasOwn(candidate.definitions, type)));
      if (!declared)
        throw new Error(`projectionSpec: no declared decider has every event type of ${types.join(', ')}`);
      const store = createEventStore(options.db, declared);
      if (!registered.has(declared.decider)) {
        await store.register();
        registered.add(declared.decider);
      }
      const last = await store.loadLast(deciderId);
      const stored = await store.append(deciderId, events as never, {
        expectedLastEventId: last?.eventId ?? null,
      });
      const position = positionAfter(stored);
      if (position) positions.set(deciderId, position);
      return specification;
    },
    async drain({ timeoutMs = 30_000 } = {}) {
      const projection = createProjection({ pollIntervalMs: 20, ...options });
      await projection.start();
      try {
        for (const position of positions.values())
          await waitForView(options.db, options.view, position, { timeoutMs });
      } finally {
        await projection.stop();
      }
    },
  };
  return specification;
}
