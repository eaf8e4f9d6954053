/**
 * A decider for the SQL API's tests where the events themselves do not matter: one registered event type,
 * 'created', and appendOne, which appends one event of it to a stream.
 */
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';

export const decider = 'catalogue';

/** Registers the decider's event type, 'created' (version 1). */
export async function registerDecider(sql: postgres.Sql) {
  await sql`SELECT * FROM register_decider_event(${decider}, 'created')`;
}

/** Appends one 'created' event to the stream `deciderId`, after `previousId` (null: the stream's first event). */
export async function appendOne(
  sql: postgres.Sql,
  deciderId: string,
  previousId: string | null,
  commandId: string = randomUUID(),
) {
  const [row] = await sql<{ event_id: string; offset: string }[]>`
    SELECT * FROM append_event('created', ${randomUUID()}, ${decider}, ${deciderId}, '{"n": 1}', ${commandId},
                               ${previousId})`;
  if (!row) throw new Error('no row');
  return row;
}
