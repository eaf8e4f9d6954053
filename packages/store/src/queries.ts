/**
 * Typed Drizzle queries for what an application or an operator asks of the log. Each returns a query builder:
 * await it as it is, or refine it first (`.limit(100)`, `.where(…)` replaces the filter).
 */
import { events } from '@fstore/schema';
import { and, asc, count, eq, gt, gte, lt, lte, max, min, type SQL, sql } from 'drizzle-orm';
import type { Database } from './database.js';

/** A stream's events, in order. */
export function eventsOfStream(db: Database, deciderId: string) {
  return db.select().from(events).where(eq(events.deciderId, deciderId)).orderBy(asc(events.offset));
}

/**
 * The events one command appended to a stream of one decider type, in order (through the stream's index, filtered
 * by command).
 */
export function eventsOfCommand(db: Database, decider: string, deciderId: string, commandId: string) {
  return db
    .select()
    .from(events)
    .where(and(eq(events.deciderId, deciderId), eq(events.decider, decider), eq(events.commandId, commandId)))
    .orderBy(asc(events.offset));
}

/** Every event of one type (of one decider type), in log order. */
export function eventsOfType(db: Database, decider: string, type: string) {
  return db
    .select()
    .from(events)
    .where(and(eq(events.decider, decider), eq(events.event, type)))
    .orderBy(asc(events.offset));
}

/**
 * The events of one correlation id, across streams, in log order: a command's events and everything they caused.
 * It asks what get_correlated_events asks, so that the partial index of correlation ids answers.
 */
export function eventsOfCorrelation(db: Database, correlationId: string) {
  return db
    .select()
    .from(events)
    .where(
      and(
        sql`${events.metadata} ? 'correlation_id'`,
        sql`${events.metadata} ->> 'correlation_id' = ${correlationId}`,
      ),
    )
    .orderBy(asc(events.offset));
}

/** Events created in [from, to), in log order. */
export function eventsBetween(db: Database, from: Date, to: Date) {
  return db
    .select()
    .from(events)
    .where(and(gte(events.createdAt, from), lt(events.createdAt, to)))
    .orderBy(asc(events.offset));
}

/** Events with an offset in (after, upTo], in log order: the way to page through the whole log. */
export function eventsInOffsetRange(db: Database, after: number, upTo: number) {
  return db
    .select()
    .from(events)
    .where(and(gt(events.offset, after), lte(events.offset, upTo)))
    .orderBy(asc(events.offset));
}

/** The streams of a decider type, with their size and first and last offsets. */
export function streamsOfDecider(db: Database, decider: string) {
  return db
    .select({
      deciderId: events.deciderId,
      events: count(),
      firstOffset: min(events.offset).mapWith(Number),
      lastOffset: max(events.offset).mapWith(Number),
      closed: sql<boolean>`bool_or(${events.final})`,
    })
    .from(events)
    .where(eq(events.decider, decider))
    .groupBy(events.deciderId)
    .orderBy(asc(events.deciderId));
}

/**
 * A view's progress, as `view_status()` reports it (streams, pending, leased and stopped streams, unread events, the
 * oldest unread, parked events: the same figures as @fstore/stream's `viewStatus`), with three more read from its
 * lock rows: streams closed by a final event, the lowest read position and the highest stream head.
 */
export function viewProgress(db: Database, view: string) {
  const ofLocks = (aggregate: SQL) => sql`(SELECT ${aggregate} FROM locks l WHERE l.view = s.view)`;
  return db
    .select({
      view: sql<string>`s.view`,
      streams: sql<number>`s.streams`.mapWith(Number),
      pendingStreams: sql<number>`s.pending_streams`.mapWith(Number),
      leasedStreams: sql<number>`s.leased_streams`.mapWith(Number),
      stoppedStreams: sql<number>`s.stopped_streams`.mapWith(Number),
      eventsBehind: sql<number>`s.events_behind`.mapWith(Number),
      oldestUnackedAt: sql<Date | null>`s.oldest_unacked_at`.mapWith((value: Date | string) =>
        value instanceof Date ? value : new Date(value),
      ),
      parkedEvents: sql<number>`s.parked_events`.mapWith(Number),
      closedStreams: sql<number>`${ofLocks(sql`count(*) FILTER (WHERE l.offset_final)`)}`.mapWith(Number),
      lowestPosition: sql<number>`${ofLocks(sql`min(l.last_offset)`)}`.mapWith(Number),
      headOffset: sql<number>`${ofLocks(sql`max(l."offset")`)}`.mapWith(Number),
    })
    .from(sql`view_status() AS s`)
    .where(sql`s.view = ${view}`);
}
