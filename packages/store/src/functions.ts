/**
 * The event-sourcing SQL functions, one small typed wrapper each, named after the function in camelCase. They run
 * in whatever Drizzle database or transaction they are given, and return rows as Drizzle would select them.
 * Failures of the append functions are mapped to typed errors (errors.ts); the rest pass through.
 */

import { randomBytes, randomUUID } from 'node:crypto';
import { type DeciderEventType, type Event, type Snapshot, snapshots } from '@fstore/schema';
import { sql } from 'drizzle-orm';
import { type Database, decodeDeciderRow, decodeEventRow, queryRows, rowDecoder } from './database.js';
import { toAppendError } from './errors.js';

/** `register_decider_event`: registers an event type (and version) a decider may publish. Idempotent. */
export async function registerDeciderEvent(
  db: Database,
  input: { decider: string; event: string; description?: string | null; version?: number },
): Promise<DeciderEventType[]> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM register_decider_event(${input.decider}, ${input.event}, ${input.description ?? null}::text, ${input.version ?? 1}::bigint)`,
  );
  return rows.map(decodeDeciderRow);
}

export interface AppendEventInput {
  event: string;
  eventId: string;
  decider: string;
  deciderId: string;
  /** The payload as JSON text. */
  data: string;
  commandId: string;
  previousId: string | null;
  version?: number;
  final?: boolean;
  /** The metadata as JSON text (append_event's ten-argument form), or none. */
  metadata?: string | null;
}

/** `append_event`: appends one event after `previousId` (null for a new stream). */
export async function appendEvent(db: Database, input: AppendEventInput): Promise<Event[]> {
  try {
    const metadata = input.metadata == null ? sql`` : sql`, ${input.metadata}::text::jsonb`;
    const rows = await queryRows(
      db,
      sql`SELECT * FROM append_event(${input.event}, ${input.eventId}::uuid, ${input.decider}, ${input.deciderId},
        ${input.data}::text::jsonb, ${input.commandId}::uuid, ${input.previousId}::uuid, ${input.version ?? 1}::bigint,
        ${input.final ?? false}::boolean${metadata})`,
    );
    return rows.map(decodeEventRow);
  } catch (error) {
    throw toAppendError(error, {
      decider: input.decider,
      deciderId: input.deciderId,
      expected: input.previousId,
      types: [{ type: input.event, version: input.version ?? 1 }],
    });
  }
}

export interface AppendEventsInput {
  decider: string;
  deciderId: string;
  /** The stream's last event as the writer saw it; null: the stream must not exist yet. */
  previousId: string | null;
  commandId: string;
  /** Refuse the append if the stream already holds events of commandId (CommandAlreadyAppliedError). */
  oncePerCommand?: boolean;
  /** Stored with each event, as SQL names its keys (see encodeMetadata); null or absent for none. */
  metadata?: Record<string, unknown> | null;
  /** Each payload is a JSON value (serialised here, once, with the whole batch). */
  events: readonly { event: string; eventId: string; data: unknown; version: number; final: boolean }[];
}

/** `append_events`: appends one command's events atomically, chained after `previousId`; idempotent on retry. */
export async function appendEvents(db: Database, input: AppendEventsInput): Promise<Event[]> {
  const batch = JSON.stringify(
    input.events.map((e) => ({
      event: e.event,
      event_id: e.eventId,
      event_version: e.version,
      final: e.final,
      data: e.data,
    })),
  );
  try {
    const metadata = input.metadata == null ? null : JSON.stringify(input.metadata);
    const rows = await queryRows(
      db,
      sql`SELECT * FROM append_events(${input.decider}, ${input.deciderId}, ${input.previousId}::uuid, ${input.commandId}::uuid, ${batch}::text::jsonb, ${input.oncePerCommand === true}::boolean, ${metadata}::text::jsonb)`,
    );
    return rows.map(decodeEventRow);
  } catch (error) {
    throw toAppendError(error, {
      decider: input.decider,
      deciderId: input.deciderId,
      expected: input.previousId,
      commandId: input.commandId,
      types: input.events.map((e) => ({ type: e.event, version: e.version })),
    });
  }
}

/**
 * `get_events`: a stream's events in offset order, of one decider type when `decider` is given; with `page`, only
 * the first `limit` after `afterOffset` (read a long stream page by page, each page after the last offset before).
 */
export function getEvents(db: Database, deciderId: string, decider?: string): Promise<Event[]>;
export function getEvents(
  db: Database,
  deciderId: string,
  decider: string,
  page: { afterOffset: number; limit: number },
): Promise<Event[]>;
export async function getEvents(
  db: Database,
  deciderId: string,
  decider?: string,
  page?: { afterOffset: number; limit: number },
): Promise<Event[]> {
  const rows = await queryRows(
    db,
    decider === undefined
      ? sql`SELECT * FROM get_events(${deciderId}::text)`
      : page === undefined
        ? sql`SELECT * FROM get_events(${deciderId}::text, ${decider}::text)`
        : sql`SELECT * FROM get_events(${deciderId}::text, ${decider}::text, ${page.afterOffset}::bigint, ${page.limit}::int)`,
  );
  return rows.map(decodeEventRow);
}

/** `get_event`: the event with this id, if any. */
export async function getEvent(db: Database, eventId: string): Promise<Event | undefined> {
  const rows = await queryRows(db, sql`SELECT * FROM get_event(${eventId}::uuid)`);
  return rows.map(decodeEventRow)[0];
}

/** `get_correlated_events`: the events of one correlation id (their metadata's), across streams, in log order. */
export async function getCorrelatedEvents(db: Database, correlationId: string): Promise<Event[]> {
  const rows = await queryRows(db, sql`SELECT * FROM get_correlated_events(${correlationId}::text)`);
  return rows.map(decodeEventRow);
}

/** `get_last_event`: the last event of a stream of one decider type, if any. */
export async function getLastEvent(
  db: Database,
  deciderId: string,
  decider: string,
): Promise<Event | undefined> {
  const rows = await queryRows(db, sql`SELECT * FROM get_last_event(${deciderId}::text, ${decider}::text)`);
  return rows.map(decodeEventRow)[0];
}

const decodeSnapshotRow = rowDecoder<Snapshot>(snapshots);

/** `get_snapshot`: the newest snapshot of a stream for this version of its decider, if any. */
export async function getSnapshot(
  db: Database,
  input: { decider: string; deciderId: string; version: string },
): Promise<Snapshot | undefined> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM get_snapshot(${input.decider}::text, ${input.deciderId}::text, ${input.version}::text)`,
  );
  return rows.map(decodeSnapshotRow)[0];
}

/**
 * `save_snapshot`: stores the state folded up to the stream's event at `offset`, unless a snapshot of this version
 * reaches as far already; returns the one the stream has now.
 */
export async function saveSnapshot(
  db: Database,
  input: { decider: string; deciderId: string; version: string; offset: number; state: unknown },
): Promise<Snapshot | undefined> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM save_snapshot(${input.decider}::text, ${input.deciderId}::text, ${input.version}::text, ${input.offset}::bigint, ${JSON.stringify(input.state)}::text::jsonb)`,
  );
  return rows.map(decodeSnapshotRow)[0];
}

/** `delete_snapshots`: deletes a decider's snapshots, of one version or of all; returns how many. */
export async function deleteSnapshots(db: Database, decider: string, version?: string): Promise<number> {
  const [row] = await queryRows(
    db,
    sql`SELECT delete_snapshots(${decider}::text, ${version ?? null}::text) AS deleted`,
  );
  return Number(row?.deleted ?? 0);
}

/** `rotate_subject_key`: a new key for a subject's personal data from now on; the older keys still decrypt. */
export async function rotateSubjectKey(db: Database, subject: string): Promise<string> {
  const keyId = randomUUID();
  await queryRows(
    db,
    sql`SELECT rotate_subject_key(${subject}::text, ${keyId}::uuid, ${randomBytes(32)}::bytea)`,
  );
  return keyId;
}

/**
 * `forget_subject`: deletes a subject's keys, so that its personal fields read as `forgotten` from now on (and
 * every snapshot, a cache that may hold them decrypted); returns how many keys went. Only the owner of fstore's
 * tables may call it: least-privilege.sql grants it to neither role. Rebuild the read models that projected the
 * subject's data.
 */
export async function forgetSubject(db: Database, subject: string): Promise<number> {
  const [row] = await queryRows(db, sql`SELECT forget_subject(${subject}::text) AS keys`);
  return Number(row?.keys ?? 0);
}
