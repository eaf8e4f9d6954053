/**
 * The event store's tables, declared in Drizzle.
 *
 * Names and columns are fstore-sql's, in schema `public`, so that every SQL example of fstore-sql's README and any
 * existing fstore-sql client keep working. What Drizzle cannot declare (functions, triggers, rules) lives in the
 * custom migrations next to the generated one, under `migrations/`.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  foreignKey,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

/** PostgreSQL's 64-bit transaction id. Read as text: it does not fit a JavaScript number in general. */
const xid8 = customType<{ data: string; driverData: string }>({
  dataType: () => 'xid8',
});

/**
 * Which event types (and versions) a decider may publish. An event cannot be appended before its
 * `(decider, event, event_version)` is registered here: the foreign key on `events` enforces it.
 * Rows are immutable: rules turn UPDATE and DELETE into no-ops (for roles allowed to write the table; anyone else is
 * refused, 42501), and a trigger refuses TRUNCATE.
 */
export const deciders = pgTable(
  'deciders',
  {
    decider: text('decider').notNull(),
    event: text('event').notNull(),
    eventVersion: bigint('event_version', { mode: 'number' }).notNull().default(1),
    description: text('description'),
  },
  (t) => [primaryKey({ name: 'deciders_pkey', columns: [t.decider, t.event, t.eventVersion] })],
);

/**
 * The append-only log. One stream per `decider_id`; within it, each event names the one before it in
 * `previous_id` (null only for the first), which is the optimistic lock: two writers that saw the same last event
 * collide on `events_previous_id_key`, two writers of a first event on `events_first_event_key`.
 */
export const events = pgTable(
  'events',
  {
    event: text('event').notNull(),
    eventId: uuid('event_id').notNull(),
    eventVersion: bigint('event_version', { mode: 'number' }).notNull().default(1),
    decider: text('decider').notNull(),
    deciderId: text('decider_id').notNull(),
    data: jsonb('data').notNull(),
    commandId: uuid('command_id').notNull(),
    previousId: uuid('previous_id'),
    final: boolean('final').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    /** Global order of appends. Numbers stay exact up to 2^53, far beyond any log this table will hold. */
    offset: bigserial('offset', { mode: 'number' }).primaryKey(),
    transactionId: xid8('transaction_id').notNull().default(sql`pg_current_xact_id()`),
    /**
     * What the writer attaches (null for fstore-sql's appends): a JSON object of `correlation_id`, `causation_id`,
     * `traceparent`, `tracestate` (W3C trace context) and free-form `headers`, within 8 KiB.
     */
    metadata: jsonb('metadata'),
  },
  (t) => [
    // One column rather than four: headers are free-form anyway, fstore-sql's row keeps its shape (one trailing
    // nullable column, free when null), and the SQL API grows no argument per key. The check keeps the shape
    // readable by every client, and the correlation id short enough for its index.
    check(
      'events_metadata_check',
      sql`${t.metadata} IS NULL OR (
        jsonb_typeof(${t.metadata}) = 'object'
        AND ${t.metadata} - ARRAY['correlation_id', 'causation_id', 'traceparent', 'tracestate', 'headers'] = '{}'::jsonb
        AND coalesce(jsonb_typeof(${t.metadata} -> 'correlation_id'), 'string') = 'string'
        AND coalesce(length(${t.metadata} ->> 'correlation_id'), 0) <= 200
        AND coalesce(jsonb_typeof(${t.metadata} -> 'causation_id'), 'string') = 'string'
        AND coalesce(length(${t.metadata} ->> 'causation_id'), 0) <= 200
        AND coalesce(jsonb_typeof(${t.metadata} -> 'traceparent'), 'string') = 'string'
        AND coalesce(jsonb_typeof(${t.metadata} -> 'tracestate'), 'string') = 'string'
        AND coalesce(jsonb_typeof(${t.metadata} -> 'headers'), 'object') = 'object'
        AND pg_column_size(${t.metadata}) <= 8192)`,
    ),

    unique('events_event_id_key').on(t.eventId),
    unique('events_previous_id_key').on(t.previousId),
    // UNIQUE ignores NULLs, so `previous_id` alone lets two "first" events into one stream. This closes that hole.
    uniqueIndex('events_first_event_key').on(t.deciderId, t.decider).where(sql`${t.previousId} IS NULL`),
    // A stream has at most one final event. The append trigger also asks "is this stream closed?" here: an index
    // that holds only final events answers in one probe, however long the stream.
    uniqueIndex('events_final_key').on(t.deciderId, t.decider).where(sql`${t.final}`),
    // Loading a stream and finding its last event: an index range in offset order.
    index('events_decider_id_offset_idx').on(t.deciderId, t.offset),
    // The order in which views' frontiers read the log (advance_view): by transaction, so that everything below
    // the oldest transaction still running is final, then by offset within one transaction.
    index('events_transaction_id_offset_idx').on(t.transactionId, t.offset),
    // The events of one correlation id, in log order. Partial: an append without one (fstore-sql's, or any that
    // gives no metadata) adds no index entry.
    index('events_correlation_id_idx')
      .on(sql`(${t.metadata} ->> 'correlation_id')`, t.offset)
      .where(sql`${t.metadata} ? 'correlation_id'`),
    foreignKey({
      name: 'events_decider_event_fkey',
      columns: [t.decider, t.event, t.eventVersion],
      foreignColumns: [deciders.decider, deciders.event, deciders.eventVersion],
    }),
  ],
);

/**
 * Registered views (subscribers). Field names mirror fstore-sql's columns; the TypeScript API calls
 * `lock_timeout_s` `leaseSeconds` and `pooling_delay_ms` `pollIntervalMs` (`pooling_delay_s` is fstore-sql's
 * seconds column, kept for its clients).
 */
export const views = pgTable(
  'views',
  {
    view: text('view').primaryKey(),
    startAt: timestamp('start_at').notNull().defaultNow(),
    lockTimeoutS: bigint('lock_timeout_s', { mode: 'number' }).notNull().default(300),
    poolingDelayS: bigint('pooling_delay_s', { mode: 'number' }),
    poolingDelayMs: bigint('pooling_delay_ms', { mode: 'number' }),
    edgeFunctionUrl: text('edge_function_url'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    /** The deciders whose events the view projects; null for every decider (fstore-sql's views). */
    subscribedDeciders: text('subscribed_deciders').array(),
    /** The event types the view projects; null for every type. */
    subscribedEvents: text('subscribed_events').array(),
  },
  (t) => [
    check('views_lock_timeout_s_check', sql`${t.lockTimeoutS} > 0`),
    check('views_pooling_delay_s_check', sql`${t.poolingDelayS} >= 0`),
    check('views_pooling_delay_ms_check', sql`${t.poolingDelayMs} >= 0`),
  ],
);

/**
 * One row per (view, stream): how far the view has read the stream (`last_offset`), the stream's head (`offset`),
 * and the lease (`locked_until`). Consumers lease rows with `FOR UPDATE SKIP LOCKED`.
 */
export const locks = pgTable(
  'locks',
  {
    view: text('view').notNull(),
    deciderId: text('decider_id').notNull(),
    offset: bigint('offset', { mode: 'number' }).notNull(),
    lastOffset: bigint('last_offset', { mode: 'number' }).notNull(),
    lockedUntil: timestamp('locked_until', { withTimezone: true })
      .notNull()
      .default(sql`now() - interval '1ms'`),
    offsetFinal: boolean('offset_final').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    /**
     * The lease's token, set by lease_events: only its holder can acknowledge, renew or fail the lease, so a worker
     * whose lease expired and was taken over cannot commit its work (fstore-sql's stream_events leaves it null).
     */
    leaseId: uuid('lease_id'),
    /**
     * The offset of the last event lease_events delivered under lease_id: the holder may acknowledge (or report as
     * failed) events up to it, never past it, so no event is skipped without having been delivered.
     */
    leasedTo: bigint('leased_to', { mode: 'number' }),
    /** Failed deliveries of the stream's next event; back to 0 when the stream moves on. */
    attempts: integer('attempts').notNull().default(0),
    /** The last failure's error, for operators. */
    lastError: text('last_error'),
  },
  (t) => [
    primaryKey({ name: 'locks_pkey', columns: [t.view, t.deciderId] }),
    foreignKey({ name: 'locks_view_fkey', columns: [t.view], foreignColumns: [views.view] }).onDelete(
      'cascade',
    ),
    // Only streams with unread events are indexed, in the order consumers take them (least recently served
    // first). Leasing therefore reads a handful of index entries whether a view has a thousand streams or a
    // million, and rows leased by others (locked_until in the future) lie past the end of the range it scans.
    index('locks_pending_idx').on(t.view, t.lockedUntil, t.offset).where(sql`${t.lastOffset} < ${t.offset}`),
  ],
);

/**
 * How far each view has read the log into its lock rows (advance_view): every event before
 * (`transaction_id`, `offset`) in the log's transaction order has been seen. Appends write only the event; the
 * consumers of a view move this frontier when they lease, and never past a transaction still running, so an event
 * that commits late is still ahead of it. `floor_transaction_id` is where the frontier started when the view was
 * registered to start now: events of earlier transactions all precede `start_at`, and were never read.
 */
export const viewFrontiers = pgTable(
  'view_frontiers',
  {
    view: text('view').primaryKey(),
    transactionId: xid8('transaction_id').notNull().default(sql`'0'::xid8`),
    offset: bigint('offset', { mode: 'number' }).notNull().default(0),
    floorTransactionId: xid8('floor_transaction_id').notNull().default(sql`'0'::xid8`),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    foreignKey({
      name: 'view_frontiers_view_fkey',
      columns: [t.view],
      foreignColumns: [views.view],
    }).onDelete('cascade'),
  ],
);

/**
 * Events that come before their previous event in the log's order (transaction id, then offset): a transaction took
 * its id before the one that appended the previous event, and appended after it committed. The append trigger
 * records them; a log batch looks up a stream's previous event only when its first event in the window is one of
 * them, since any other event's previous comes before it and was handled already. An extra row costs one look-up,
 * never an event; a missing one would let a batch hand a stream over out of order, so only the owner writes here.
 */
export const outOfOrderEvents = pgTable(
  'out_of_order_events',
  {
    transactionId: xid8('transaction_id').notNull(),
    offset: bigint('offset', { mode: 'number' }).notNull(),
  },
  (t) => [
    primaryKey({ name: 'out_of_order_events_pkey', columns: [t.transactionId, t.offset] }),
    // Claims ask whether anything at or above their window's lowest offset is out of order (migration 0030).
    index('out_of_order_events_offset_idx').on(t.offset),
  ],
);

/**
 * Events a view gave up on after its configured number of attempts (a dead letter), with the last error. The
 * stream either moved on past the event, or stopped at it (`stream_stopped`) until an operator retries or discards
 * it (retry_parked_event, discard_parked_event). A retry of an event whose stream moved on is a worker's:
 * claim_parked_event, then ack_parked_event or fail_parked_event.
 */
export const parkedEvents = pgTable(
  'parked_events',
  {
    view: text('view').notNull(),
    deciderId: text('decider_id').notNull(),
    offset: bigint('offset', { mode: 'number' }).notNull(),
    eventId: uuid('event_id').notNull(),
    error: text('error').notNull(),
    attempts: integer('attempts').notNull(),
    streamStopped: boolean('stream_stopped').notNull(),
    parkedAt: timestamp('parked_at', { withTimezone: true }).notNull().defaultNow(),
    /** Set by retry_parked_event on an event the stream moved past: a worker delivers it once more. */
    retryRequestedAt: timestamp('retry_requested_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ name: 'parked_events_pkey', columns: [t.view, t.offset] }),
    foreignKey({ name: 'parked_events_view_fkey', columns: [t.view], foreignColumns: [views.view] }).onDelete(
      'cascade',
    ),
    index('parked_events_retry_idx')
      .on(t.view, t.retryRequestedAt)
      .where(sql`${t.retryRequestedAt} IS NOT NULL`),
  ],
);

/**
 * The newest folded state of a stream, per version of its decider that the application names: a cache that the
 * command handler loads before the events after it, so that a long stream is not read whole for every command.
 * Deleting any of them changes no result, only speed. Written through save_snapshot after an append committed,
 * never inside it; an event's snapshots go with it (the cascade on its offset).
 */
export const snapshots = pgTable(
  'snapshots',
  {
    decider: text('decider').notNull(),
    deciderId: text('decider_id').notNull(),
    /** The decider's version as the application names it: a new version ignores the older ones' snapshots. */
    version: text('version').notNull(),
    /** The last event folded into `state`. */
    offset: bigint('offset', { mode: 'number' }).notNull(),
    eventId: uuid('event_id').notNull(),
    state: jsonb('state').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'snapshots_pkey', columns: [t.decider, t.deciderId, t.version] }),
    // The cascade from events looks snapshots up by offset: archiving a stream deletes its events, and without this
    // index each of them would scan the whole table.
    index('snapshots_offset_idx').on(t.offset),
    foreignKey({
      name: 'snapshots_offset_fkey',
      columns: [t.offset],
      foreignColumns: [events.offset],
    }).onDelete('cascade'),
  ],
);

/** PostgreSQL's bytea, as a Node.js Buffer (postgres.js and PGlite both read it so). */
const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

/**
 * The keys that encrypt subjects' personal data in event payloads (crypto-shredding): one row per key, the newest
 * of a subject encrypting what is written now, the older ones still decrypting what they wrote (a rotation adds
 * one). Forgetting a subject deletes its rows: what they encrypted can never be read again, while the events, their
 * order and their chains stay as they are.
 */
export const subjectKeys = pgTable(
  'subject_keys',
  {
    keyId: uuid('key_id').primaryKey(),
    subject: text('subject').notNull(),
    /** 32 bytes: an AES-256-GCM key. */
    key: bytea('key').notNull(),
    /** The subject's first key (not a rotation's): one at a time, so that writers racing for it agree. */
    first: boolean('first').notNull().default(true),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check('subject_keys_key_check', sql`octet_length(${t.key}) = 32`),
    uniqueIndex('subject_keys_first_key').on(t.subject).where(sql`${t.first}`),
    index('subject_keys_subject_idx').on(t.subject, t.createdAt),
  ],
);

/** Who forgot which subject, when, and the keys that went with it: the audit of forget_subject. */
export const subjectErasures = pgTable(
  'subject_erasures',
  {
    subject: text('subject').notNull(),
    keyIds: uuid('key_ids').array().notNull(),
    /** session_user: the login that asked, whatever role it acted as. */
    forgottenBy: text('forgotten_by').notNull(),
    forgottenAt: timestamp('forgotten_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('subject_erasures_subject_idx').on(t.subject)],
);

/**
 * The cold table of closed streams that were archived (archive_stream, archive_closed_streams): their events, moved
 * out of `events` whole and unchanged. Nothing that appends or leases reads it; loading a stream (get_events,
 * get_last_event, get_event) does. The columns are `events`' own, in the same order, so that the two read as one.
 */
export const archivedEvents = pgTable(
  'archived_events',
  {
    event: text('event').notNull(),
    eventId: uuid('event_id').notNull(),
    eventVersion: bigint('event_version', { mode: 'number' }).notNull(),
    decider: text('decider').notNull(),
    deciderId: text('decider_id').notNull(),
    data: jsonb('data').notNull(),
    commandId: uuid('command_id').notNull(),
    previousId: uuid('previous_id'),
    final: boolean('final').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
    offset: bigint('offset', { mode: 'number' }).primaryKey(),
    transactionId: xid8('transaction_id').notNull(),
    metadata: jsonb('metadata'),
  },
  (t) => [
    index('archived_events_decider_id_offset_idx').on(t.deciderId, t.offset),
    index('archived_events_event_id_idx').on(t.eventId),
  ],
);

/**
 * One row per archived stream: what left the hot tables, when and by whom, and (once retention removed its events)
 * when they were removed. The row stays after removal: it is how the store says a stream's history is gone, and
 * it keeps a closed stream from being opened again under the same id.
 */
export const archivedStreams = pgTable(
  'archived_streams',
  {
    decider: text('decider').notNull(),
    deciderId: text('decider_id').notNull(),
    events: bigint('events', { mode: 'number' }).notNull(),
    lastOffset: bigint('last_offset', { mode: 'number' }).notNull(),
    /** When the stream's final event was appended: retention counts a stream's age from here. */
    closedAt: timestamp('closed_at', { withTimezone: true }).notNull(),
    archivedAt: timestamp('archived_at', { withTimezone: true }).notNull().defaultNow(),
    /** session_user: the login that asked. */
    archivedBy: text('archived_by').notNull(),
    /** Set by remove_archived_streams: the events are gone for good. */
    removedAt: timestamp('removed_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ name: 'archived_streams_pkey', columns: [t.decider, t.deciderId] }),
    // Retention's work list: streams still held, oldest closed first.
    index('archived_streams_retention_idx').on(t.closedAt).where(sql`${t.removedAt} IS NULL`),
    // view_status and missing_history count a view's archived streams by decider and closing time.
    index('archived_streams_decider_closed_at_idx').on(t.decider, t.closedAt),
  ],
);

/** The audit of retention: one row per remove_archived_streams call that removed anything. */
export const retentionRuns = pgTable('retention_runs', {
  /** Streams closed before this were eligible. */
  closedBefore: timestamp('closed_before', { withTimezone: true }).notNull(),
  streams: bigint('streams', { mode: 'number' }).notNull(),
  events: bigint('events', { mode: 'number' }).notNull(),
  /** session_user: the login that asked. */
  removedBy: text('removed_by').notNull(),
  removedAt: timestamp('removed_at', { withTimezone: true }).notNull().defaultNow(),
});

/** A row of `deciders`: one event type (and version) a decider may publish. */
export type DeciderEventType = typeof deciders.$inferSelect;
export type NewDeciderEventType = typeof deciders.$inferInsert;
/** @deprecated use DeciderEventType (`Decider` is @fstore/store's decide/evolve interface); removed in 0.3 */
export type Decider = DeciderEventType;
/** @deprecated use NewDeciderEventType; removed in 0.3 */
export type NewDecider = NewDeciderEventType;
export type Event = typeof events.$inferSelect;
export type NewEvent = typeof events.$inferInsert;
export type View = typeof views.$inferSelect;
export type NewView = typeof views.$inferInsert;
export type Lock = typeof locks.$inferSelect;
export type NewLock = typeof locks.$inferInsert;
export type ParkedEvent = typeof parkedEvents.$inferSelect;
export type ViewFrontier = typeof viewFrontiers.$inferSelect;
export type Snapshot = typeof snapshots.$inferSelect;
export type SubjectKey = typeof subjectKeys.$inferSelect;
export type SubjectErasure = typeof subjectErasures.$inferSelect;
export type ArchivedEvent = typeof archivedEvents.$inferSelect;
export type ArchivedStream = typeof archivedStreams.$inferSelect;
export type RetentionRun = typeof retentionRuns.$inferSelect;
export type OutOfOrderEvent = typeof outOfOrderEvents.$inferSelect;
