/**
 * Events committed out of offset order: what out_of_order_events records and what a log batch must hand to a lease.
 * Shared by the trigger's tests and claim_log_batch's.
 */
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';

/** Appends one `happened` event to stream `id` of `decider`, chained on the stream's last event; returns its offset. */
export async function appendNext(client: postgres.Sql, decider: string, id: string): Promise<number> {
  const [row] = await client<{ offset: string }[]>`
    SELECT "offset" FROM append_event('happened', ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()},
      (SELECT event_id FROM events WHERE decider_id = ${id} ORDER BY "offset" DESC LIMIT 1))`;
  return Number(row?.offset);
}

/**
 * Two more events of stream `id`: `early` takes its transaction id first, another connection appends the stream's
 * next event and commits, then `early` appends after that one and commits. Returns their offsets, the other's
 * (lower) first: early's comes first in the log, which is ordered by transaction id.
 */
export async function appendOutOfOrder(
  sql: postgres.Sql,
  decider: string,
  id: string,
): Promise<readonly [number, number]> {
  const early = await sql.reserve();
  try {
    await early`BEGIN`;
    await early`SELECT pg_current_xact_id()`;
    const previous = await appendNext(sql, decider, id);
    const late = await appendNext(early, decider, id);
    await early`COMMIT`;
    return [previous, late];
  } finally {
    early.release();
  }
}
