/**
 * The typed event store of one decider type: register its event types, append what a command decided, load and
 * iterate streams. It wraps @fstore/schema's SQL functions; every rule they enforce stays in SQL.
 */
import { randomUUID } from 'node:crypto';
import type { DeciderEventType, Event } from '@fstore/schema';
import { type ArchivedStream, getArchivedStream } from './archive.js';
import type { Database } from './database.js';
import { isTransientDatabaseError, PayloadTooLargeError, ValidationError } from './errors.js';
import {
  checkEventForWrite,
  type DeciderEvents,
  decodeStoredData,
  type EventDefinitions,
  type EventOf,
  type StoredEvent,
} from './events.js';
import {
  appendEvents,
  getEvent,
  getEvents,
  getLastEvent,
  getSnapshot,
  registerDeciderEvent,
  saveSnapshot,
} from './functions.js';
import { decodeMetadata, encodeMetadata, type Metadata } from './metadata.js';
import { encryptPersonalFields, type SubjectKeys, subjectKeysFor } from './personal-data.js';
import { eventsOfCommand } from './queries.js';
import { inSpan, type SpanOptions } from './telemetry.js';
import { Issues, limits, toJson } from './validation.js';

export interface EventStoreOptions {
  /** The largest payload (serialised JSON, in bytes) an event may have. Default 1 MiB. */
  maxPayloadBytes?: number;
  /** Validate loaded payloads against their schema (when declared). Upcast payloads are always validated. Default true. */
  validateOnLoad?: boolean;
  /** How many events `iterate` reads per query. Default 500. */
  pageSize?: number;
  /**
   * How many times `append` runs again when the database rolled it back for a serialization failure (40001) or a
   * deadlock (40P01), after a short jittered pause: safe, because the retry carries the same event ids and an
   * append stored once is not stored again. These come from REPEATABLE READ or SERIALIZABLE sessions (YugabyteDB's
   * default) when another writer touches the same rows meanwhile, or from triggers of the application's own. Never
   * inside `with(tx)`: such an error aborts
   * the caller's transaction, and only the caller can run it again. Default 3; 0 turns it off.
   */
  transientRetries?: number;
}

export interface AppendOptions {
  /**
   * The stream's last event id as the caller saw it, or null for "the stream must not exist yet". If the stream
   * ends elsewhere, the append fails with OptimisticConcurrencyError and nothing is written.
   */
  expectedLastEventId: string | null;
  /** The command that caused these events. Default: a new UUID. Pass the same one when retrying. */
  commandId?: string;
  /**
   * Apply the command once: if the stream already holds events of `commandId` (given), the append writes nothing
   * and fails with CommandAlreadyAppliedError. A retry of the very same events still returns them.
   */
  oncePerCommand?: boolean;
  /**
   * Stored with every event of this append: correlation and causation ids, trace context, headers. Refused with
   * InvalidMetadataError unless SQL's rules hold (known keys, ids of up to 200 characters, 8 KiB in all).
   */
  metadata?: Metadata;
}

/** An event to append; give `eventId` to make a retry idempotent (the same ids and content are stored once). */
export type AppendInput<TEvent> = TEvent & { eventId?: string };

/** Where to start reading a stream: after an offset, or after an event of the stream. */
export type ReadFrom = { afterOffset: number } | { afterEventId: string };

/** A stream as `loadStream` reads it: its events, and its archive row when it was archived. */
export interface LoadedStream<E> {
  events: StoredEvent<E>[];
  /** Set when the stream was archived: it is closed, and loads from the archive (`removedAt`: retention removed it). */
  archived?: ArchivedStream;
}

export class EventStore<TEvents extends DeciderEvents<EventDefinitions>> {
  readonly decider: string;
  private readonly maxPayloadBytes: number;
  private readonly validateOnLoad: boolean;
  private readonly pageSize: number;
  private readonly transientRetries: number;
  /** Set by `with(tx)`: a statement that fails there aborts the caller's transaction, so it is never retried. */
  private insideTransaction = false;

  constructor(
    private readonly db: Database,
    readonly events: TEvents,
    private readonly options: EventStoreOptions = {},
  ) {
    this.decider = events.decider;
    this.maxPayloadBytes = options.maxPayloadBytes ?? 1024 * 1024;
    this.validateOnLoad = options.validateOnLoad ?? true;
    this.pageSize = options.pageSize ?? 500;
    this.transientRetries = options.transientRetries ?? 3;
    const issues = new Issues();
    issues.whole('maxPayloadBytes', this.maxPayloadBytes, 1);
    issues.whole('pageSize', this.pageSize, 1, 100_000);
    issues.whole('transientRetries', this.transientRetries, 0, 100);
    issues.text('decider', events.decider, limits.maxNameLength);
    for (const type of Object.keys(events.definitions))
      issues.text(`events.${type}`, type, limits.maxNameLength);
    issues.throwIfAny();
  }

  /** Whether this store works inside a caller's transaction (`with(tx)`): its failures are the caller's to retry. */
  get inTransaction(): boolean {
    return this.insideTransaction;
  }

  /** The same store, working inside a Drizzle transaction (to write other tables atomically with the events). */
  with(tx: Database): EventStore<TEvents> {
    const store = new EventStore(tx, this.events, this.options);
    store.insideTransaction = true;
    return store;
  }

  /** Registers every declared event type at its current version, with its description. Idempotent: run it at start-up. */
  async register(): Promise<DeciderEventType[]> {
    const registered: DeciderEventType[] = [];
    for (const [type, definition] of Object.entries(this.events.definitions)) {
      registered.push(
        ...(await registerDeciderEvent(this.db, {
          decider: this.decider,
          event: type,
          description: definition.description ?? null,
          version: definition.version,
        })),
      );
    }
    return registered;
  }

  /**
   * Appends the events of one command to a stream, atomically and in one round trip, after the event the caller
   * saw last. Input is checked before any SQL runs. Throws OptimisticConcurrencyError, DuplicateEventError,
   * CommandAlreadyAppliedError (with oncePerCommand), StreamClosedError, UnknownEventTypeError, ValidationError or
   * PayloadTooLargeError; connection errors pass through as they are. A serialization failure or a deadlock is run
   * again (`transientRetries`).
   */
  async append(
    deciderId: string,
    events: readonly AppendInput<EventOf<TEvents>>[],
    options: AppendOptions,
  ): Promise<StoredEvent<EventOf<TEvents>>[]> {
    const attributes = {
      ...databaseSpan('append_events'),
      'fstore.decider': this.decider,
      'fstore.decider_id': deciderId,
      'fstore.event_count': Array.isArray(events) ? events.length : undefined,
    };
    return inSpan(`append ${this.decider}`, { kind: 'client', attributes }, async (span) => {
      const issues = new Issues();
      issues.text('deciderId', deciderId, limits.maxDeciderIdLength);
      if (options.expectedLastEventId !== null)
        issues.uuid('expectedLastEventId', options.expectedLastEventId);
      if (options.commandId !== undefined) issues.uuid('commandId', options.commandId);
      if (options.oncePerCommand && options.commandId === undefined)
        issues.add('commandId', 'is required with oncePerCommand: a new id would never match');
      if (!Array.isArray(events) || events.length === 0) issues.add('events', 'must be a non-empty array');
      // The trace that appends goes with the events, for the spans of their handlers to link to.
      const traceparent = span.traceparent();
      const metadata = encodeMetadata(
        traceparent && options.metadata?.traceparent === undefined
          ? { ...options.metadata, traceparent }
          : options.metadata,
      );
      if (metadata !== null) toJson(metadata, 'metadata', issues);
      issues.throwIfAny();

      const batch = [];
      const drawnKeys = new Map();
      for (const [index, input] of events.entries()) {
        const path = `events.${index}`;
        const { definition, data } = await checkEventForWrite(this.events, input, path);
        if (input.eventId !== undefined) issues.uuid(`${path}.eventId`, input.eventId);
        const json = toJson(data, `${path}.data`, issues);
        issues.throwIfAny();
        const bytes = Buffer.byteLength(json ?? '', 'utf8');
        if (bytes > this.maxPayloadBytes)
          throw new PayloadTooLargeError(input.type, bytes, this.maxPayloadBytes);
        batch.push({
          event: input.type,
          eventId: input.eventId ?? randomUUID(),
          data: definition.personal
            ? await encryptPersonalFields(this.db, definition.personal, data, deciderId, path, drawnKeys)
            : data,
          version: definition.version,
          final: definition.final,
        });
      }
      const ids = new Set(batch.map((e) => e.eventId));
      if (ids.size !== batch.length)
        throw new ValidationError([{ path: 'events', message: 'event ids must be distinct' }]);

      const input = {
        decider: this.decider,
        deciderId,
        previousId: options.expectedLastEventId,
        commandId: options.commandId ?? randomUUID(),
        oncePerCommand: options.oncePerCommand === true,
        metadata,
        events: batch,
      };
      span.setAttributes({ 'fstore.command_id': input.commandId });
      const rows = await this.retryingTransient(() => appendEvents(this.db, input));
      return this.decodeAll(rows);
    });
  }

  /** Runs `statement` again after 40001 or 40P01, up to `transientRetries` times (never inside `with(tx)`). */
  private async retryingTransient<T>(statement: () => Promise<T>): Promise<T> {
    const retries = this.insideTransaction ? 0 : this.transientRetries;
    for (let attempt = 0; ; attempt++) {
      try {
        return await statement();
      } catch (error) {
        if (attempt >= retries || !isTransientDatabaseError(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(100, 5 * 2 ** attempt)));
      }
    }
  }

  /** The whole stream, in order (or from a point on). For very long streams, prefer `iterate`. */
  async load(deciderId: string, from?: ReadFrom): Promise<StoredEvent<EventOf<TEvents>>[]> {
    return inSpan(`load ${this.decider}`, loadSpan(this.decider, deciderId), async (span) => {
      const loaded = [];
      for await (const event of this.iterate(deciderId, from)) loaded.push(event);
      span.setAttributes({ 'fstore.event_count': loaded.length });
      return loaded;
    });
  }

  /**
   * The whole stream, as `load`, and whether it was archived (`get_archived_stream`): an archived stream loads from
   * the archive as it was; one that retention removed since has no events left, and `archived.removedAt` says when
   * they went.
   */
  async loadStream(deciderId: string, from?: ReadFrom): Promise<LoadedStream<EventOf<TEvents>>> {
    const events = await this.load(deciderId, from);
    const archived = await getArchivedStream(this.db, deciderId, this.decider);
    return archived ? { events, archived } : { events };
  }

  /** The stream's last event, or undefined for a stream that does not exist (`get_last_event`). */
  async loadLast(deciderId: string): Promise<StoredEvent<EventOf<TEvents>> | undefined> {
    checkDeciderId(deciderId);
    const row = await getLastEvent(this.db, deciderId, this.decider);
    return row ? (await this.decodeAll([row]))[0] : undefined;
  }

  /**
   * Reads a stream page by page (`pageSize` events per `get_events` call, each after the last offset of the page
   * before), so memory stays flat however long it is.
   */
  async *iterate(deciderId: string, from?: ReadFrom): AsyncGenerator<StoredEvent<EventOf<TEvents>>> {
    checkDeciderId(deciderId);
    let after = from ? await this.resolveStart(deciderId, from) : 0;
    for (;;) {
      const page = await getEvents(this.db, deciderId, this.decider, {
        afterOffset: after,
        limit: this.pageSize,
      });
      for (const event of await this.decodeAll(page)) yield event;
      if (page.length < this.pageSize) return;
      after = page[page.length - 1]?.offset ?? after;
    }
  }

  /** The events one command appended to a stream, in order: none if it appended nothing there. */
  async loadCommand(deciderId: string, commandId: string): Promise<StoredEvent<EventOf<TEvents>>[]> {
    checkDeciderId(deciderId);
    const issues = new Issues();
    issues.uuid('commandId', commandId);
    issues.throwIfAny();
    return this.decodeAll(await eventsOfCommand(this.db, this.decider, deciderId, commandId));
  }

  /** The newest snapshot of a stream for this version of the decider (`get_snapshot`), if any. */
  async loadSnapshot(
    deciderId: string,
    version: string,
  ): Promise<{ offset: number; eventId: string; state: unknown } | undefined> {
    const snapshot = await getSnapshot(this.db, { decider: this.decider, deciderId, version });
    return snapshot && { offset: snapshot.offset, eventId: snapshot.eventId, state: snapshot.state };
  }

  /** Stores the state folded up to the stream's event at `offset` (`save_snapshot`), unless one reaches further. */
  async saveSnapshot(deciderId: string, version: string, offset: number, state: unknown): Promise<void> {
    await saveSnapshot(this.db, { decider: this.decider, deciderId, version, offset, state });
  }

  private async resolveStart(deciderId: string, from: ReadFrom): Promise<number> {
    if ('afterOffset' in from) {
      if (!Number.isSafeInteger(from.afterOffset) || from.afterOffset < 0) {
        throw new ValidationError([{ path: 'afterOffset', message: 'must be a whole number of 0 or more' }]);
      }
      return from.afterOffset;
    }
    const issues = new Issues();
    issues.uuid('afterEventId', from.afterEventId);
    issues.throwIfAny();
    const row = await getEvent(this.db, from.afterEventId);
    if (!row || row.deciderId !== deciderId || row.decider !== this.decider) {
      throw new ValidationError([
        { path: 'afterEventId', message: `${from.afterEventId} is not an event of stream ${deciderId}` },
      ]);
    }
    return row.offset;
  }

  /** Decodes rows, with the keys of their personal fields fetched once for all of them. */
  private async decodeAll(rows: readonly Event[]): Promise<StoredEvent<EventOf<TEvents>>[]> {
    const keys = await subjectKeysFor(
      this.db,
      rows.map((row) => row.data),
    );
    return Promise.all(rows.map((row) => toStoredEvent(this.events, row, this.validateOnLoad, keys)));
  }
}

/** The attributes of a span around one of the SQL API's calls (OpenTelemetry's database conventions). */
function databaseSpan(operation: string) {
  return { 'db.system.name': 'postgresql', 'db.operation.name': operation, 'db.collection.name': 'events' };
}

/** The span of loading a stream (`store.load`, and the command handler's load before deciding). */
export function loadSpan(decider: string, deciderId: string): SpanOptions {
  return {
    kind: 'client',
    attributes: { ...databaseSpan('get_events'), 'fstore.decider': decider, 'fstore.decider_id': deciderId },
  };
}

function checkDeciderId(deciderId: unknown) {
  const issues = new Issues();
  issues.text('deciderId', deciderId, limits.maxDeciderIdLength);
  issues.throwIfAny();
}

/**
 * Turns a stored row of `events` into the typed event its declaration describes: upcast from older versions,
 * validated against its schema (always when upcast, otherwise when `validate`). Throws UnreadableEventError.
 */
export async function toStoredEvent<TEvents extends DeciderEvents<EventDefinitions>>(
  events: TEvents,
  row: Event,
  validate = true,
  /** The keys of its personal fields, if it has any (`subjectKeysFor`): without them, UnknownSubjectKeyError. */
  keys?: SubjectKeys,
): Promise<StoredEvent<EventOf<TEvents>>> {
  const data = await decodeStoredData(
    events,
    { eventId: row.eventId, type: row.event, version: row.eventVersion, data: row.data },
    validate,
    keys,
  );
  return {
    type: row.event,
    data,
    eventId: row.eventId,
    version: row.eventVersion,
    decider: row.decider,
    deciderId: row.deciderId,
    commandId: row.commandId,
    previousId: row.previousId,
    final: row.final,
    createdAt: row.createdAt,
    offset: row.offset,
    transactionId: row.transactionId,
    metadata: decodeMetadata(row.metadata),
  } as StoredEvent<EventOf<TEvents>>;
}

/** Creates the typed event store of one decider type over a Drizzle database. */
export function createEventStore<TEvents extends DeciderEvents<EventDefinitions>>(
  db: Database,
  events: TEvents,
  options?: EventStoreOptions,
): EventStore<TEvents> {
  return new EventStore(db, events, options);
}
