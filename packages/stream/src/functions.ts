/**
 * The streaming SQL functions, one small typed wrapper each, named after its function in camelCase (`ack_event` is
 * `ackEvent`, `ack_events` is `ackEvents`). Durations are `leaseSeconds` and `pollIntervalMs` whatever fstore-sql
 * calls the parameter (`lock_timeout_s`, `lock_seconds`, `pooling_delay_ms`).
 */
import {
  type Event,
  type Lock,
  locks,
  type ParkedEvent,
  parkedEvents,
  type View,
  views,
} from '@fstore/schema';
import type { Database } from '@fstore/store';
import { decodeEventRow, queryRows, rowDecoder } from '@fstore/store/internal';
import { type SQL, sql } from 'drizzle-orm';
import { TransactionLostError, toLeaseError } from './errors.js';

const decodeView = rowDecoder<View>(views);
const decodeLock = rowDecoder<Lock>(locks);
const decodeParked = rowDecoder<ParkedEvent>(parkedEvents);

/** Dates go in as timestamptz and become the session's local `timestamp`, which is what views.start_at holds. */
const asTimestamp = (date: Date) => sql`${date.toISOString()}::timestamptz::timestamp`;

/** What a view projects: some deciders, and optionally some event types; null or absent means every one. */
export interface ViewSubscription {
  /** The deciders whose events the view projects. Streams of other deciders get no lock row for it. */
  deciders?: readonly string[] | null;
  /** The event types it projects; other events are never delivered to it. */
  eventTypes?: readonly string[] | null;
}

export interface RegisterViewOptions extends ViewSubscription {
  /** Where reading starts: events created at or after it. Default: now. */
  startAt?: Date;
  /** How long a lease lasts, in seconds (`lock_timeout_s`). Default 300. */
  leaseSeconds?: number;
  /** The polling delay workers use when idle, in milliseconds (`pooling_delay_ms`, kept exactly). */
  pollIntervalMs?: number;
  /** @deprecated use leaseSeconds; removed in 0.3 */
  lockTimeoutS?: number;
  /** @deprecated use pollIntervalMs; removed in 0.3 */
  pollingDelayMs?: number;
}

/** A list as a text[] argument (through JSON: the drivers spread a bare array into several parameters). */
const textArray = (values: readonly string[] | null | undefined) =>
  values == null
    ? sql`NULL::text[]`
    : sql`ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(values)}::text::jsonb))`;

/** A subscription as register_view and reset_view take it: two text arrays, null for every one. */
const subscriptionArguments = ({ deciders, eventTypes }: ViewSubscription) =>
  sql`${textArray(deciders)}, ${textArray(eventTypes)}`;

/**
 * `register_view`: registers a view, or updates it. Registering again with another `startAt` or subscription
 * resets the view's positions (a rebuild); with the same ones, it keeps them. With `deciders` or `eventTypes`
 * (even null), the view's subscription is set; without, a new view sees everything and an existing one keeps its
 * subscription.
 */
export async function registerView(
  db: Database,
  view: string,
  options: RegisterViewOptions = {},
): Promise<View> {
  const startAt = options.startAt ? asTimestamp(options.startAt) : sql`now()::timestamp`;
  const leaseSeconds = options.leaseSeconds ?? options.lockTimeoutS;
  const pollIntervalMs = options.pollIntervalMs ?? options.pollingDelayMs;
  if (options.deciders !== undefined || options.eventTypes !== undefined) {
    return registerThenSetLease(
      db,
      view,
      sql`SELECT * FROM register_view(${view}::text, ${pollIntervalMs ?? null}::bigint, ${startAt}, ${subscriptionArguments(options)})`,
      leaseSeconds,
    );
  }
  if (pollIntervalMs === undefined) {
    const [row] = await queryRows(
      db,
      sql`SELECT * FROM register_view(${view}::text, ${startAt}, ${leaseSeconds ?? 300}::bigint)`,
    );
    return decodeView(row ?? {});
  }
  return registerThenSetLease(
    db,
    view,
    sql`SELECT * FROM register_view(${view}::text, ${pollIntervalMs}::bigint, ${startAt})`,
    leaseSeconds,
  );
}

/**
 * Runs a register_view form that takes no lease length, then sets it when one is given: both or neither, in one
 * transaction.
 */
async function registerThenSetLease(
  db: Database,
  view: string,
  registration: SQL,
  leaseSeconds: number | undefined,
): Promise<View> {
  if (leaseSeconds === undefined) {
    const [row] = await queryRows(db, registration);
    return decodeView(row ?? {});
  }
  return db.transaction(async (tx) => {
    await queryRows(tx, registration);
    return setViewLockTimeout(tx, view, leaseSeconds);
  });
}

/** `set_view_lock_timeout`: how long the view's leases last, in seconds; everything else of the view is kept. */
export async function setViewLockTimeout(db: Database, view: string, leaseSeconds: number): Promise<View> {
  const [row] = await queryRows(
    db,
    sql`SELECT * FROM set_view_lock_timeout(${view}::text, ${leaseSeconds}::bigint)`,
  );
  return decodeView(row ?? {});
}

/** `stream_events`: leases up to `limit` streams and returns the next unread event of each. */
export async function streamEvents(
  db: Database,
  view: string,
  limit = 1,
  leaseSeconds = 300,
): Promise<Event[]> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM stream_events(${view}::text, ${limit}::int, ${leaseSeconds}::int)`,
  );
  return rows.map(decodeEventRow);
}

/** `ack_event`: the view handled the stream up to `offset`: move on and release it. */
export async function ackEvent(
  db: Database,
  view: string,
  deciderId: string,
  offset: number,
): Promise<Lock[]> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM ack_event(${view}::text, ${deciderId}::text, ${offset}::bigint)`,
  );
  return rows.map(decodeLock);
}

/** `nack_event`: release the stream; its next event is delivered again. */
export async function nackEvent(db: Database, view: string, deciderId: string): Promise<Lock[]> {
  const rows = await queryRows(db, sql`SELECT * FROM nack_event(${view}::text, ${deciderId}::text)`);
  return rows.map(decodeLock);
}

/** `schedule_nack_event`: release the stream after `milliseconds`. */
export async function scheduleNackEvent(
  db: Database,
  view: string,
  deciderId: string,
  milliseconds: number,
): Promise<Lock[]> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM schedule_nack_event(${view}::text, ${deciderId}::text, ${milliseconds}::bigint)`,
  );
  return rows.map(decodeLock);
}

/**
 * `advance_view`: moves the view's frontier over up to `maxEvents` events of the log into lock rows; returns how
 * many it passed (0 when there is nothing new, or another consumer is advancing the view right now).
 */
export async function advanceView(db: Database, view: string, maxEvents = 10_000): Promise<number> {
  const [row] = await queryRows(db, sql`SELECT advance_view(${view}::text, ${maxEvents}::int) AS passed`);
  return Number(row?.passed ?? 0);
}

/** What `claimLogBatch` took: the events to handle, and whether the view's frontier moved. */
export interface LogBatch {
  events: Event[];
  /**
   * Whether the batch moved the view's frontier: when it did but brought no events (they all went to streams that
   * go on through their leases, or to no subscribed stream), the log may hold more right after it.
   */
  frontierMoved: boolean;
  /**
   * Whether another consumer held the view's frontier while ended events waited past it: it is taking them, and
   * taking the frontier between two of its batches would only start its work again with small ones.
   */
  frontierHeld: boolean;
}

/**
 * `claim_log_batch`: in `tx`, takes up to `maxEvents` of the view's next events straight from the log, in log order,
 * for the caller to handle in that same transaction: committing it records their streams as handled (up to the frontier) and moves the
 * view's frontier; rolling it back gives them back. Events of streams with work for their leases go to their lock
 * rows instead. No events when another consumer holds the frontier or nothing new has ended (see docs/sql-api.md).
 */
export async function claimLogBatch(tx: Database, view: string, maxEvents = 1000): Promise<LogBatch> {
  const rows = await queryRows(tx, sql`SELECT * FROM claim_log_batch(${view}::text, ${maxEvents}::int)`);
  if (rows.length > 0) return { events: rows.map(decodeEventRow), frontierMoved: true, frontierHeld: false };
  const [said] = await queryRows(
    tx,
    sql`SELECT current_setting('fstore.log_batch_moved', true) IS NOT DISTINCT FROM 'true' AS moved,
               current_setting('fstore.log_batch_held', true) IS NOT DISTINCT FROM 'true' AS held`,
  );
  return { events: [], frontierMoved: said?.moved === true, frontierHeld: said?.held === true };
}

/** An event leased by `leaseEvents`, with its stream's lease token and failed deliveries so far. */
export type LeasedEvent = Event & { leaseId: string; attempts: number };

export type LeaseEventsOptions = {
  streams: number;
  eventsPerStream: number;
  /**
   * How many events of the log to read into lock rows first (advance_view); 0 for none. Default: about what the
   * lease may deliver, as `lease_events` with four arguments does.
   */
  advanceEvents?: number;
} & (
  | { leaseSeconds: number }
  | {
      /** @deprecated use leaseSeconds; removed in 0.3 */
      lockSeconds: number;
    }
);

/** `lease_events`: leases up to `streams` streams and returns up to `eventsPerStream` unread events of each. */
export async function leaseEvents(
  db: Database,
  view: string,
  options: LeaseEventsOptions,
): Promise<LeasedEvent[]> {
  const leaseSeconds = 'leaseSeconds' in options ? options.leaseSeconds : options.lockSeconds;
  const advance = options.advanceEvents === undefined ? sql`` : sql`, ${options.advanceEvents}::int`;
  const rows = await queryRows(
    db,
    sql`SELECT * FROM lease_events(${view}::text, ${options.streams}::int, ${options.eventsPerStream}::int, ${leaseSeconds}::int${advance})`,
  );
  // Thousands of rows a poll: add the two fields to the decoded row rather than copy it.
  return rows.map((row) => {
    const leased = decodeEventRow(row) as LeasedEvent;
    leased.leaseId = String(row.lease_id);
    leased.attempts = Number(row.attempts);
    return leased;
  });
}

/**
 * The transaction-local setting that marks a worker's batch transaction. With `transactionMarker`, an
 * acknowledgement runs only in the transaction that set it to that value: run anywhere else (outside any
 * transaction, or in another one), it acknowledges nothing and throws TransactionLostError.
 */
export const batchMarker = 'fstore.batch_transaction';

/** SQL that is true only inside the transaction marked with `marker` (see batchMarker). */
const markedBy = (marker: string | undefined) =>
  marker === undefined
    ? sql`true`
    : sql`current_setting(${batchMarker}, true) IS NOT DISTINCT FROM ${marker}`;

/**
 * `ack_events`: the lease's holder acknowledges the stream up to `offset`, in the caller's transaction. Throws
 * LeaseLostError if the lease is no longer held (the transaction must then roll back).
 */
export async function ackEvents(
  db: Database,
  lease: { view: string; deciderId: string; leaseId: string },
  offset: number,
  options: { release?: boolean; transactionMarker?: string } = {},
): Promise<Lock> {
  let row: Record<string, unknown> | undefined;
  try {
    [row] = await queryRows(
      db,
      sql`SELECT * FROM ack_events(${lease.view}::text, ${lease.deciderId}::text, ${lease.leaseId}::uuid, ${offset}::bigint, ${options.release ?? true}::boolean) WHERE ${markedBy(options.transactionMarker)}`,
    );
  } catch (error) {
    throw toLeaseError(error, lease.view, lease.deciderId, lease.leaseId);
  }
  if (!row) throw new TransactionLostError(lease.view);
  return decodeLock(row);
}

/**
 * `ack_leases`: the holder of several leases acknowledges each stream up to its offset, all or nothing, in the
 * caller's transaction. Throws LeaseLostError if any of them is no longer held.
 */
export async function ackLeases(
  db: Database,
  view: string,
  acks: readonly { deciderId: string; leaseId: string; offset: number }[],
  options: { transactionMarker?: string } = {},
): Promise<number> {
  let row: Record<string, unknown> | undefined;
  try {
    const batch = JSON.stringify(
      acks.map((a) => ({ decider_id: a.deciderId, lease_id: a.leaseId, offset: a.offset })),
    );
    [row] = await queryRows(
      db,
      sql`SELECT ack_leases(${view}::text, ${batch}::text::jsonb) AS acked WHERE ${markedBy(options.transactionMarker)}`,
    );
  } catch (error) {
    throw toLeaseError(
      error,
      view,
      acks.map((a) => a.deciderId).join(', '),
      acks.map((a) => a.leaseId).join(', '),
    );
  }
  if (!row) throw new TransactionLostError(view);
  return Number(row.acked);
}

/** `renew_lease`: extends the lease; false when it is no longer held. */
export async function renewLease(
  db: Database,
  lease: { view: string; deciderId: string; leaseId: string },
  leaseSeconds: number,
): Promise<boolean> {
  const [row] = await queryRows(
    db,
    sql`SELECT renew_lease(${lease.view}::text, ${lease.deciderId}::text, ${lease.leaseId}::uuid, ${leaseSeconds}::int) AS held`,
  );
  return row?.held === true;
}

/**
 * `renew_lease` for several leases of a view in one statement; returns those no longer held. The leases are renewed
 * in the order given: give them in the order the holder acknowledges them, so the two never wait on each other.
 */
export async function renewLeases(
  db: Database,
  view: string,
  leases: readonly { deciderId: string; leaseId: string }[],
  leaseSeconds: number,
): Promise<{ deciderId: string; leaseId: string }[]> {
  if (leases.length === 0) return [];
  const batch = JSON.stringify(leases.map((l) => ({ decider_id: l.deciderId, lease_id: l.leaseId })));
  const rows = await queryRows(
    db,
    sql`SELECT x.decider_id, x.lease_id
        FROM jsonb_to_recordset(${batch}::text::jsonb) AS x(decider_id text, lease_id uuid)
        WHERE NOT renew_lease(${view}::text, x.decider_id, x.lease_id, ${leaseSeconds}::int)`,
  );
  return rows.map((row) => ({ deciderId: String(row.decider_id), leaseId: String(row.lease_id) }));
}

/** `release_lease`: gives the lease back without acknowledging; the stream is deliverable after `delayMs`. */
export async function releaseLease(
  db: Database,
  lease: { view: string; deciderId: string; leaseId: string },
  delayMs = 0,
): Promise<boolean> {
  const [row] = await queryRows(
    db,
    sql`SELECT release_lease(${lease.view}::text, ${lease.deciderId}::text, ${lease.leaseId}::uuid, ${delayMs}::bigint) AS held`,
  );
  return row?.held === true;
}

export type FailureOutcome = 'retry' | 'parked' | 'stopped';

/** `fail_event`: reports that the stream's next event failed: retry later, or park it (and move on, or stop). */
export async function failEvent(
  db: Database,
  lease: { view: string; deciderId: string; leaseId: string },
  failure: { offset: number; error: string; retryMs: number; maxAttempts: number; stopStream: boolean },
): Promise<FailureOutcome> {
  try {
    const [row] = await queryRows(
      db,
      sql`SELECT fail_event(${lease.view}::text, ${lease.deciderId}::text, ${lease.leaseId}::uuid, ${failure.offset}::bigint,
        ${failure.error}::text, ${Math.round(failure.retryMs)}::bigint, ${failure.maxAttempts}::int, ${failure.stopStream}::boolean) AS outcome`,
    );
    return row?.outcome as FailureOutcome;
  } catch (error) {
    throw toLeaseError(error, lease.view, lease.deciderId, lease.leaseId);
  }
}

/** `list_parked_events`: parked events of a view (of all views without one), oldest first. */
export async function listParkedEvents(db: Database, view?: string): Promise<ParkedEvent[]> {
  const rows = await queryRows(db, sql`SELECT * FROM list_parked_events(${view ?? null}::text)`);
  return rows.map(decodeParked);
}

/** `retry_parked_event`: deliver a parked event again (its stream resumes, or a worker retries it alone). */
export async function retryParkedEvent(db: Database, view: string, offset: number): Promise<ParkedEvent> {
  const [row] = await queryRows(db, sql`SELECT * FROM retry_parked_event(${view}::text, ${offset}::bigint)`);
  return decodeParked(row ?? {});
}

/** `discard_parked_event`: give up on a parked event (a stream stopped at it moves on). */
export async function discardParkedEvent(db: Database, view: string, offset: number): Promise<ParkedEvent> {
  const [row] = await queryRows(
    db,
    sql`SELECT * FROM discard_parked_event(${view}::text, ${offset}::bigint)`,
  );
  return decodeParked(row ?? {});
}

/** A parked event claimed for its requested retry, with the number of its deliveries that failed so far. */
export type ClaimedParkedEvent = Event & { attempts: number };

/**
 * `claim_parked_event`: takes the parked event of the view whose retry was requested longest ago, locked until the
 * transaction ends (other workers skip it); undefined when there is none. Handle it in that transaction and end
 * with `ackParkedEvent`, or, after a rollback, report `failParkedEvent`.
 */
export async function claimParkedEvent(db: Database, view: string): Promise<ClaimedParkedEvent | undefined> {
  const [row] = await queryRows(db, sql`SELECT * FROM claim_parked_event(${view}::text)`);
  return row ? { ...decodeEventRow(row), attempts: Number(row.attempts) } : undefined;
}

/** `ack_parked_event`: the claimed parked event was handled; it leaves the list with the transaction's writes. */
export async function ackParkedEvent(db: Database, view: string, offset: number): Promise<ParkedEvent> {
  const [row] = await queryRows(db, sql`SELECT * FROM ack_parked_event(${view}::text, ${offset}::bigint)`);
  return decodeParked(row ?? {});
}

/** `fail_parked_event`: its requested retry failed: it stays parked, one attempt more, with the new error. */
export async function failParkedEvent(
  db: Database,
  view: string,
  offset: number,
  error: string,
): Promise<ParkedEvent> {
  const [row] = await queryRows(
    db,
    sql`SELECT * FROM fail_parked_event(${view}::text, ${offset}::bigint, ${error}::text)`,
  );
  return decodeParked(row ?? {});
}

/**
 * `reset_view`: every stream of the view goes back to `startAt` (a rebuild); leases and parked events cleared.
 * Given a subscription (`deciders`, `eventTypes`), the view projects that from now on.
 */
export async function resetView(
  db: Database,
  view: string,
  startAt: Date,
  subscription?: ViewSubscription,
): Promise<View> {
  const [row] = await queryRows(
    db,
    subscription === undefined
      ? sql`SELECT * FROM reset_view(${view}::text, ${asTimestamp(startAt)})`
      : sql`SELECT * FROM reset_view(${view}::text, ${asTimestamp(startAt)}, ${subscriptionArguments(subscription)})`,
  );
  return decodeView(row ?? {});
}

export interface ViewStatus {
  view: string;
  streams: number;
  pendingStreams: number;
  leasedStreams: number;
  stoppedStreams: number;
  /** Unread events, summed over streams. */
  eventsBehind: number;
  /** When the oldest unread event was appended; null when the view is caught up. */
  oldestUnackedAt: Date | null;
  parkedEvents: number;
  /** The deciders the view subscribes to; null for every decider. */
  subscribedDeciders: string[] | null;
  /** The event types it subscribes to; null for every type. */
  subscribedEvents: string[] | null;
  /** Streams of its deciders, closed from its start point on, that were archived (removed by retention since, or
   * not): they left the log, so the view does not read them. */
  archivedStreams: number;
  /** Their events. */
  archivedEvents: number;
}

/** What `view_lag` says of a view: `view_status` without the counts that grow with the number of its streams. */
export type ViewLag = Omit<ViewStatus, 'streams' | 'archivedStreams' | 'archivedEvents'>;

/**
 * `view_lag`: how far behind each view is, at a cost that follows the backlog, not the number of streams: what to
 * poll often (the dashboard and the lag gauges do).
 */
export async function viewLag(db: Database): Promise<ViewLag[]> {
  const rows = await queryRows(db, sql`SELECT * FROM view_lag()`);
  return rows.map(toViewLag);
}

/** A row of view_lag(), from the driver or from its to_jsonb() (the dashboard reads it so, beside other figures). */
export function toViewLag(row: Record<string, unknown>): ViewLag {
  return {
    view: String(row.view),
    pendingStreams: Number(row.pending_streams),
    leasedStreams: Number(row.leased_streams),
    stoppedStreams: Number(row.stopped_streams),
    eventsBehind: Number(row.events_behind),
    oldestUnackedAt: row.oldest_unacked_at == null ? null : new Date(String(row.oldest_unacked_at)),
    parkedEvents: Number(row.parked_events),
    subscribedDeciders: (row.subscribed_deciders as string[] | null) ?? null,
    subscribedEvents: (row.subscribed_events as string[] | null) ?? null,
  };
}

/** `view_status`: how far behind each view is, with its streams (every lock row) and what of it was archived. */
export async function viewStatus(db: Database): Promise<ViewStatus[]> {
  const rows = await queryRows(db, sql`SELECT * FROM view_status()`);
  return rows.map((row) => ({
    view: String(row.view),
    streams: Number(row.streams),
    pendingStreams: Number(row.pending_streams),
    leasedStreams: Number(row.leased_streams),
    stoppedStreams: Number(row.stopped_streams),
    eventsBehind: Number(row.events_behind),
    oldestUnackedAt: row.oldest_unacked_at == null ? null : new Date(String(row.oldest_unacked_at)),
    parkedEvents: Number(row.parked_events),
    subscribedDeciders: (row.subscribed_deciders as string[] | null) ?? null,
    subscribedEvents: (row.subscribed_events as string[] | null) ?? null,
    // Older schemas (before 0022) have no such columns.
    archivedStreams: Number(row.archived_streams ?? 0),
    archivedEvents: Number(row.archived_events ?? 0),
  }));
}

/** What `missing_history` says a view does not read because it left the log. */
export interface MissingHistory {
  /** Archived streams of its deciders closed from its start point on: they still load one by one. */
  archivedStreams: number;
  archivedEvents: number;
  /** Those that retention removed: gone. */
  removedStreams: number;
  removedEvents: number;
}

/** `missing_history`: the streams a view skips because they were archived or removed before it read them. */
export async function missingHistory(db: Database, view: string): Promise<MissingHistory> {
  const [row] = await queryRows(db, sql`SELECT * FROM missing_history(${view}::text)`);
  return {
    archivedStreams: Number(row?.archived_streams ?? 0),
    archivedEvents: Number(row?.archived_events ?? 0),
    removedStreams: Number(row?.removed_streams ?? 0),
    removedEvents: Number(row?.removed_events ?? 0),
  };
}

/** `set_wakeups`: turns NOTIFY wake-ups on appends on or off. */
export async function setWakeups(db: Database, enabled: boolean): Promise<boolean> {
  const [row] = await queryRows(db, sql`SELECT set_wakeups(${enabled}::boolean) AS enabled`);
  return row?.enabled === true;
}
