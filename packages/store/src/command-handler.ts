/**
 * Runs a decider the way fmodel shapes it: decide(command, state) -> events, evolve(state, event) -> state,
 * initialState. Load the stream, fold the state, decide, append after the last event seen; on a concurrent
 * append, reload and decide again, a bounded number of times with jittered backoff.
 *
 * A command applies once. Every call has a command id (the caller's, or a new one), stored with its events. The
 * load before deciding reads every event of the stream, so it sees whether the command is there already, and the
 * append lands only right after the last event that load saw (previous_id is unique): two tries of one command
 * cannot both append, since the later must have loaded after the earlier committed. So the handler can retry what
 * left it not knowing whether its append committed (a lost connection, a restart, a failover): the reload finds the
 * command's events and returns them instead of deciding again. With the caller's id (an HTTP idempotency key, say)
 * that holds across calls and processes too. (append_events once per command checks the same in SQL, for callers
 * that append without loading; the handler does not pay for it twice: it cost 20-40% of an append on streams of a
 * few hundred events, bench A5.)
 *
 * Snapshots (the `snapshots` option) make a long stream cheap to load: the newest snapshot of the decider's version,
 * then the events after it. That load no longer sees the whole stream, so it can no longer tell whether the command
 * is in it: an append after a snapshot asks SQL instead (append_events once per command), and a refusal there means
 * the command was applied, whose events are then read and returned. A snapshot is written after the append committed
 * (never inside a caller's transaction), and a failed write costs only the next load's time.
 *
 * The Decider type is defined here (a few lines) rather than taken from @fraktalio/fmodel-ts: the handler needs
 * only these three members, and an fmodel-ts Decider has them too, so it can be passed as it is.
 */
import { randomUUID } from 'node:crypto';
import {
  CommandAlreadyAppliedError,
  isConnectionError,
  isTransientDatabaseError,
  OptimisticConcurrencyError,
} from './errors.js';
import { type EventStore, loadSpan } from './event-store.js';
import {
  type DeciderEvents,
  type EventDefinitions,
  type EventOf,
  positionAfter,
  type StoredEvent,
  type StreamPosition,
} from './events.js';
import type { Metadata } from './metadata.js';
import { activeTraceId, inSpan } from './telemetry.js';
import { Issues, limits } from './validation.js';

export interface Decider<TCommand, TState, TEvent> {
  decide(command: TCommand, state: TState): readonly TEvent[] | Promise<readonly TEvent[]>;
  evolve(state: TState, event: TEvent): TState;
  readonly initialState: TState;
}

export interface SnapshotOptions<TState> {
  /** Store the state after this many events since the last snapshot (or the stream's start). */
  every: number;
  /**
   * The decider's version, as you name it: change it whenever `evolve` or the state's shape changes. Snapshots of
   * another version are never loaded.
   */
  version: string;
  /** The state as a JSON value, for a state that is not one (a Map, a Date…). Default: the state itself. */
  toJson?: (state: TState) => unknown;
  /** The state back from `toJson`'s value. A snapshot it throws on is passed over: the stream is read whole. */
  fromJson?: (json: unknown) => TState;
}

export interface CommandHandlerOptions<TState = unknown> {
  /** Load from the newest snapshot of the stream, and store one every `every` events. Default: no snapshots. */
  snapshots?: SnapshotOptions<TState>;
  /** How many times to decide in all, when writers keep colliding. Default 5. */
  maxAttempts?: number;
  /** The first backoff, doubled each attempt, with full jitter. Default 10 ms. */
  backoffMs?: number;
  /** The longest backoff. Default 500 ms (1 s while the database is unreachable). */
  maxBackoffMs?: number;
  /**
   * How long connection errors, restarts and failovers (and serialization failures) are retried before the last
   * one reaches the caller. Default 30,000 ms; 0 passes them through at once. Never inside `store.with(tx)`: the
   * caller's transaction is gone, and only the caller can run it again.
   */
  reconnectForMs?: number;
}

export interface HandleOptions {
  /**
   * The command's id, stored with its events: a UUID. Give the same one to every try of one request (an
   * idempotency key) and the command applies once, whichever try's answer was lost. Default: a new one per call,
   * which makes the call's own retries safe but not a second call.
   */
  commandId?: string;
  /**
   * Where the command comes from, stored with its events: give the caller's correlation id (a request id), or
   * `causedBy(event)` when a projection acts on an event. The correlation id defaults to the command's id (it starts
   * a conversation) and the causation id to the command's id.
   */
  metadata?: Metadata;
}

export interface HandledCommand<TState, TEvent> {
  /** The events of this command (none when the decider decided nothing). */
  events: StoredEvent<TEvent>[];
  /** The state after them; when `replayed`, the stream's state as it is now. */
  state: TState;
  /** How many times it loaded the stream: 1 unless another writer got in between or the connection failed. */
  attempts: number;
  /** The command's id: the caller's, or the one this call drew. */
  commandId: string;
  /** Whether the stream already held the command's events (an earlier call, or a try whose answer was lost). */
  replayed: boolean;
  /**
   * Where the command's events end (undefined when it decided nothing): wait on it with `waitForView` before
   * reading a read model, to read your own write.
   */
  position: StreamPosition | undefined;
}

export type CommandHandler<TCommand, TState, TEvent> = (
  deciderId: string,
  command: TCommand,
  options?: HandleOptions,
) => Promise<HandledCommand<TState, TEvent>>;

/** Creates the handler of one decider over its event store. */
export function createCommandHandler<TEvents extends DeciderEvents<EventDefinitions>, TCommand, TState>(
  store: EventStore<TEvents>,
  decider: Decider<TCommand, TState, EventOf<TEvents>>,
  options: CommandHandlerOptions<TState> = {},
): CommandHandler<TCommand, TState, EventOf<TEvents>> {
  const maxAttempts = options.maxAttempts ?? 5;
  const backoffMs = options.backoffMs ?? 10;
  const maxBackoffMs = options.maxBackoffMs ?? 500;
  const reconnectForMs = options.reconnectForMs ?? 30_000;
  const issues = new Issues();
  issues.whole('maxAttempts', maxAttempts, 1, 1000);
  issues.whole('backoffMs', backoffMs, 0);
  issues.whole('maxBackoffMs', maxBackoffMs, 0);
  issues.whole('reconnectForMs', reconnectForMs, 0);
  const snapshots = options.snapshots;
  if (snapshots !== undefined) {
    issues.whole('snapshots.every', snapshots.every, 1);
    issues.text('snapshots.version', snapshots.version, limits.maxNameLength);
  }
  issues.throwIfAny();
  const toJson = snapshots?.toJson ?? ((state: TState) => state as unknown);
  const fromJson = snapshots?.fromJson ?? ((json: unknown) => json as TState);
  const pause = (ceiling: number) => new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));

  return async (deciderId, command, handleOptions = {}) => {
    if (handleOptions.commandId !== undefined) {
      const invalid = new Issues();
      invalid.uuid('commandId', handleOptions.commandId);
      invalid.throwIfAny();
    }
    const commandId = handleOptions.commandId ?? randomUUID();
    // The conversation: the caller's, else the trace the caller runs in, else this command starts one.
    const metadata: Metadata = {
      ...handleOptions.metadata,
      correlationId: handleOptions.metadata?.correlationId ?? activeTraceId() ?? commandId,
      causationId: handleOptions.metadata?.causationId ?? commandId,
    };
    const attributes = {
      'fstore.decider': store.decider,
      'fstore.decider_id': deciderId,
      'fstore.command_id': commandId,
    };
    return inSpan(`handle ${store.decider}`, { kind: 'internal', attributes }, async (span) => {
      const handled = await handleWithRetries(deciderId, command, commandId, metadata);
      span.setAttributes({
        'fstore.command.attempts': handled.result.attempts,
        'fstore.command.conflicts': handled.conflicts,
        'fstore.command.replayed': handled.result.replayed,
        'fstore.event_count': handled.result.events.length,
      });
      return handled.result;
    });
  };

  /** The snapshot to start from, if any: one whose state `fromJson` cannot read is passed over. */
  async function readSnapshot(deciderId: string, version: string) {
    const stored = await store.loadSnapshot(deciderId, version);
    if (!stored) return undefined;
    try {
      return { ...stored, state: fromJson(stored.state) };
    } catch {
      return undefined;
    }
  }

  /**
   * After `since` events past the last snapshot, stores one at `offset` (the head the state has folded). Only once
   * the events are committed, so never inside the caller's transaction; a failure here loses nothing.
   */
  async function writeSnapshot(deciderId: string, since: number, offset: number | undefined, state: TState) {
    if (!snapshots || since < snapshots.every || offset === undefined || store.inTransaction) return;
    try {
      await store.saveSnapshot(deciderId, snapshots.version, offset, toJson(state));
    } catch {
      // A cache: the next load reads a little more.
    }
  }

  async function handleWithRetries(
    deciderId: string,
    command: TCommand,
    commandId: string,
    metadata: Metadata,
  ): Promise<{ result: HandledCommand<TState, EventOf<TEvents>>; conflicts: number }> {
    let collisions = 0;
    let unreachableSince: number | undefined;
    let unreachableTries = 0;
    for (let attempt = 1; ; attempt++) {
      const done = (result: HandledCommand<TState, EventOf<TEvents>>) => ({ result, conflicts: collisions });
      try {
        const loaded = await inSpan(
          `load ${store.decider}`,
          loadSpan(store.decider, deciderId),
          async (span) => {
            const snapshot = snapshots && (await readSnapshot(deciderId, snapshots.version));
            let state = snapshot ? snapshot.state : decider.initialState;
            let lastEventId: string | null = snapshot ? snapshot.eventId : null;
            let headOffset = snapshot?.offset;
            let count = 0;
            const ofCommand: StoredEvent<EventOf<TEvents>>[] = [];
            const from = snapshot ? { afterOffset: snapshot.offset } : undefined;
            for await (const event of store.iterate(deciderId, from)) {
              state = decider.evolve(state, event);
              lastEventId = event.eventId;
              headOffset = event.offset;
              count++;
              if (event.commandId === commandId) ofCommand.push(event);
            }
            span.setAttributes({ 'fstore.event_count': count, 'fstore.snapshot.offset': snapshot?.offset });
            return { state, lastEventId, headOffset, count, ofCommand, fromSnapshot: snapshot !== undefined };
          },
        );
        let { state } = loaded;
        const { lastEventId, ofCommand, fromSnapshot } = loaded;
        if (ofCommand.length > 0)
          return done({
            events: ofCommand,
            state,
            attempts: attempt,
            commandId,
            replayed: true,
            position: positionAfter(ofCommand),
          });
        const decided = await decider.decide(command, state);
        if (decided.length === 0) {
          await writeSnapshot(deciderId, loaded.count, loaded.headOffset, state);
          return done({
            events: [],
            state,
            attempts: attempt,
            commandId,
            replayed: false,
            position: undefined,
          });
        }
        let appended: StoredEvent<EventOf<TEvents>>[];
        try {
          appended = await store.append(deciderId, decided, {
            expectedLastEventId: lastEventId,
            commandId,
            metadata,
            // Loaded from a snapshot, the load did not see the events before it: SQL looks for the command there.
            oncePerCommand: fromSnapshot,
          });
        } catch (error) {
          if (!(error instanceof CommandAlreadyAppliedError)) throw error;
          const applied = await store.loadCommand(deciderId, commandId);
          return done({
            events: applied,
            state,
            attempts: attempt,
            commandId,
            replayed: true,
            position: positionAfter(applied),
          });
        }
        for (const event of appended) state = decider.evolve(state, event);
        await writeSnapshot(deciderId, loaded.count + appended.length, appended.at(-1)?.offset, state);
        return done({
          events: appended,
          state,
          attempts: attempt,
          commandId,
          replayed: false,
          position: positionAfter(appended),
        });
      } catch (error) {
        if (error instanceof OptimisticConcurrencyError) {
          // Another writer got in first (a concurrent try of this very command, perhaps): reload.
          collisions++;
          if (collisions >= maxAttempts) throw error;
          await pause(Math.min(maxBackoffMs, backoffMs * 2 ** (collisions - 1)));
        } else if (!store.inTransaction && (isConnectionError(error) || isTransientDatabaseError(error))) {
          // The append may have committed: the reload tells, by the command's id.
          unreachableSince ??= Date.now();
          if (Date.now() - unreachableSince >= reconnectForMs) throw error;
          unreachableTries++;
          await pause(
            Math.min(Math.max(maxBackoffMs, 1000), backoffMs * 2 ** Math.min(unreachableTries, 10)),
          );
        } else {
          throw error;
        }
      }
    }
  }
}
