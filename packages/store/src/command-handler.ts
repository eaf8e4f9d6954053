/**
 * Runs a decider the way fmodel shapes it: decide(command, state) -> events, evolve(state, event) -> state,
 * initialState. Load the stream, fold the state, decide, append after the last event seen; on a concurrent
 * append, reload and decide again, a bounded number of times with jittered backoff.
 *
 * The Decider type is defined here (a few lines) rather than taken from @fraktalio/fmodel-ts: the handler needs
 * only these three members, and an fmodel-ts Decider has them too, so it can be passed as it is.
 */
import { randomUUID } from 'node:crypto';
import { OptimisticConcurrencyError } from './errors.js';
import type { EventStore } from './event-store.js';
import type { DeciderEvents, EventDefinitions, EventOf, StoredEvent } from './events.js';

export interface Decider<TCommand, TState, TEvent> {
  decide(command: TCommand, state: TState): readonly TEvent[] | Promise<readonly TEvent[]>;
  evolve(state: TState, event: TEvent): TState;
  readonly initialState: TState;
}

export interface CommandHandlerOptions {
  /** How many times to decide in all, when writers keep colliding. Default 5. */
  maxAttempts?: number;
  /** The first backoff, doubled each attempt, with full jitter. Default 10 ms. */
  backoffMs?: number;
  /** The longest backoff. Default 500 ms. */
  maxBackoffMs?: number;
}

export interface HandledCommand<TState, TEvent> {
  /** The events this command appended (none when the decider decided nothing). */
  events: StoredEvent<TEvent>[];
  /** The state after them. */
  state: TState;
  /** How many times it decided: 1 unless another writer got in between. */
  attempts: number;
}

export type CommandHandler<TCommand, TState, TEvent> = (
  deciderId: string,
  command: TCommand,
) => Promise<HandledCommand<TState, TEvent>>;

/** Creates the handler of one decider over its event store. */
export function createCommandHandler<TEvents extends DeciderEvents<EventDefinitions>, TCommand, TState>(
  store: EventStore<TEvents>,
  decider: Decider<TCommand, TState, EventOf<TEvents>>,
  options: CommandHandlerOptions = {},
): CommandHandler<TCommand, TState, EventOf<TEvents>> {
  const maxAttempts = options.maxAttempts ?? 5;
  const backoffMs = options.backoffMs ?? 10;
  const maxBackoffMs = options.maxBackoffMs ?? 500;
  return async (deciderId, command) => {
    const commandId = randomUUID();
    for (let attempt = 1; ; attempt++) {
      let state = decider.initialState;
      let lastEventId: string | null = null;
      for await (const event of store.iterate(deciderId)) {
        state = decider.evolve(state, event);
        lastEventId = event.eventId;
      }
      const decided = await decider.decide(command, state);
      if (decided.length === 0) return { events: [], state, attempts: attempt };
      try {
        const appended = await store.append(deciderId, decided, {
          expectedLastEventId: lastEventId,
          commandId,
        });
        for (const event of appended) state = decider.evolve(state, event);
        return { events: appended, state, attempts: attempt };
      } catch (error) {
        if (!(error instanceof OptimisticConcurrencyError) || attempt >= maxAttempts) throw error;
        const ceiling = Math.min(maxBackoffMs, backoffMs * 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
      }
    }
  };
}
