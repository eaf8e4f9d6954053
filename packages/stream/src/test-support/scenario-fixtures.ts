/**
 * What every scenario starts from: the Counter events, the read-model tables and the handler that writes them,
 * stream ids, session names and timing helpers. Worker processes import it too, so it must not import vitest.
 */
import { defineEvents, event } from '@fstore/store';
import { sql as drizzleSql } from 'drizzle-orm';
import type postgres from 'postgres';
import type { ProjectedEvent, Transaction } from '../projection.js';

/**
 * A counter per stream: `Incremented` carries the counter's new value (1, 2, 3… along the stream when every writer
 * decided on the latest state), `Closed` is final and ends the stream.
 */
export const counterEvents = defineEvents('Counter', {
  Incremented: event<{ n: number }>(),
  Closed: event<{ count: number }>({ final: true }),
});

export type CounterEvent = ProjectedEvent<[typeof counterEvents]>;

/**
 * The read models the workers write. `projected`: one row per delivery, not unique on purpose, so that a second
 * delivery would show. `counter_totals`: a fold per stream (events, sum of n, last offset, closed, whether each
 * event came after the one before), which must equal the same fold of the log (inspectFold).
 */
export async function createReadModel(sql: postgres.Sql): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS projected (
      seq        bigserial,
      view       text NOT NULL,
      decider_id text NOT NULL,
      "offset"   bigint NOT NULL,
      handled_by text NOT NULL,
      handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`;
  await sql`
    CREATE TABLE IF NOT EXISTS counter_totals (
      view        text NOT NULL,
      decider_id  text NOT NULL,
      events      int NOT NULL,
      total       bigint NOT NULL,
      last_offset bigint NOT NULL,
      closed      boolean NOT NULL,
      in_order    boolean NOT NULL,
      PRIMARY KEY (view, decider_id)
    )`;
}

/** The workers' handler: writes both read models in the projection's transaction. */
export async function projectCounterEvent(
  tx: Transaction,
  view: string,
  handledBy: string,
  event: CounterEvent,
): Promise<void> {
  await tx.execute(
    drizzleSql`INSERT INTO projected (view, decider_id, "offset", handled_by) VALUES (${view}, ${event.deciderId}, ${event.offset}, ${handledBy})`,
  );
  const n = event.type === 'Incremented' ? event.data.n : 0;
  await tx.execute(drizzleSql`
    INSERT INTO counter_totals AS t (view, decider_id, events, total, last_offset, closed, in_order)
    VALUES (${view}, ${event.deciderId}, 1, ${n}, ${event.offset}, ${event.final}, true)
    ON CONFLICT (view, decider_id) DO UPDATE
      SET events      = t.events + 1,
          total       = t.total + EXCLUDED.total,
          last_offset = EXCLUDED.last_offset,
          closed      = t.closed OR EXCLUDED.closed,
          in_order    = t.in_order AND EXCLUDED.last_offset > t.last_offset AND NOT t.closed`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `count` stream ids: prefix-00, prefix-01, … */
export const streamIds = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, index) => `${prefix}-${String(index).padStart(2, '0')}`);

/** A URL with `application_name` set, so that a scenario can find (and terminate) these sessions in pg_stat_activity. */
export function withApplicationName(url: string, applicationName: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', applicationName);
  return parsed.toString();
}

/** Rejects with an error naming `what` if `promise` has not settled within timeoutMs. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
