/**
 * view_lag(): view_status() without the counts that grow with the log. On views in every state (caught up, a
 * backlog past the frontier, leased, stopped at a parked event, parked and moved on), its rows are view_status()'s
 * rows without `streams`, `archived_streams` and `archived_events`.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());
const { sql } = db;

test('agrees with view_status on views in every state', async () => {
  const decider = `decider-${randomUUID()}`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  const append = async (id: string, previous: string | null = null) => {
    const [row] = await sql<{ event_id: string; offset: string }[]>`
      SELECT event_id, "offset" FROM append_event('happened', ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()}, ${previous})`;
    return row as { event_id: string; offset: string };
  };
  const views = ['caught-up', 'backlog', 'leased', 'stopped', 'parked'].map((v) => `${v}-${randomUUID()}`);
  for (const view of views)
    await sql`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
  for (let i = 0; i < 4; i++) {
    const id = `s-${i}-${randomUUID()}`;
    const first = await append(id);
    await append(id, first.event_id);
  }
  const [caughtUp, , leased, stopped, parked] = views as [string, string, string, string, string];
  const drain = async (view: string) => {
    for (;;) {
      const rows = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
        SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 100, 100, 60)`;
      if (rows.length === 0) return;
      // The last event of each stream's lease acknowledges the lease whole.
      for (const row of new Map(rows.map((r) => [r.decider_id, r])).values())
        await sql`SELECT * FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
    }
  };
  await drain(caughtUp);
  await sql`SELECT * FROM lease_events(${leased}, 2, 100, 60)`;
  for (const [view, stop] of [
    [stopped, true],
    [parked, false],
  ] as const) {
    const [row] = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
      SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 1, 1, 60)`;
    await sql`SELECT fail_event(${view}, ${row?.decider_id ?? null}, ${row?.lease_id ?? null}, ${row?.offset ?? null}, 'boom', 0, 1, ${stop})`;
  }
  const status = await sql`SELECT * FROM view_status() WHERE view = ANY (${views})`;
  const lag = await sql`SELECT * FROM view_lag() WHERE view = ANY (${views})`;
  expect(lag).toEqual(status.map(({ streams, archived_streams, archived_events, ...rest }) => rest));
  // The states are all there.
  const byView = Object.fromEntries(lag.map((row) => [row.view, row]));
  expect(byView[caughtUp]).toMatchObject({ events_behind: '0', pending_streams: '0' });
  expect(Number(byView[views[1] as string]?.events_behind)).toBe(8);
  expect(Number(byView[leased]?.leased_streams)).toBe(2);
  expect(byView[stopped]).toMatchObject({ stopped_streams: '1', parked_events: '1' });
  expect(byView[parked]).toMatchObject({ stopped_streams: '0', parked_events: '1' });
});
