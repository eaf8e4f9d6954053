/**
 * Typed Drizzle queries for what an application or an operator asks of the log. Each returns a query builder:
 * await it as it is, or refine it first (`.limit(100)`, `.where(…)` replaces the filter).
 */
import { events, locks, views } from '@fstore/schema';
import { and, asc, count, eq, gt, gte, lt, lte, max, min, sql } from 'drizzle-orm';
import type { Database } from './database.js';

/** A stream's events, in order. */
export function eventsOfStream(db: Database, deciderId: string) {
  return db.select().from(events).where(eq(events.deciderId, deciderId)).orderBy(asc(events.offset));
}

/** Every event of one type (of one decider type), in log order. */
export function eventsOfType(db: Database, decider: string, type: string) {
  return db
    .select()
    .from(events)
    .where(and(eq(events.decider, decider), eq(events.event, type)))
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
 * A view's progress: its streams, those with unread events, those leased now, and how many stream heads it is
 * behind, summed over streams (`offset` minus `last_offset` counts positions in the global log, not events).
 */
export function viewProgress(db: Database, view: string) {
  return db
    .select({
      view: views.view,
      streams: count(locks.deciderId),
      pendingStreams: sql<number>`count(*) FILTER (WHERE ${locks.lastOffset} < ${locks.offset})`.mapWith(
        Number,
      ),
      leasedStreams: sql<number>`count(*) FILTER (WHERE ${locks.lockedUntil} > now())`.mapWith(Number),
      closedStreams: sql<number>`count(*) FILTER (WHERE ${locks.offsetFinal})`.mapWith(Number),
      lowestPosition: min(locks.lastOffset).mapWith(Number),
      headOffset: max(locks.offset).mapWith(Number),
    })
    .from(views)
    .leftJoin(locks, eq(locks.view, views.view))
    .where(eq(views.view, view))
    .groupBy(views.view);
}
