/**
 * view_reached and wait_for_view: a writer asks whether a view has handled its event yet, on a real PostgreSQL,
 * through each way a consumer handles events (a lease and its acknowledgement, a log batch), parked events, a view
 * that projects only some event types, and a wait that another session ends. Every view subscribes to a decider of
 * its own, so the other tests' events do not reach it.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, describe, expect, test } from 'vitest';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const { sql } = db;

/** A decider of its own with two event types, and a view subscribed to it (to `types` of its events, if given). */
async function setUp(types: string[] | null = null) {
  const decider = `decider-${randomUUID()}`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'noted')`;
  const view = `view-${randomUUID()}`;
  await sql`SELECT * FROM register_view(${view}, 500, 'epoch', ARRAY[${decider}]::text[], ${types}::text[])`;
  await sql`SELECT advance_view(${view})`;
  return { decider, view };
}

/** Appends an event of `type` to stream `id`, chained on its last event; returns its offset. */
async function append(decider: string, id: string, type = 'happened'): Promise<string> {
  const [last] = await sql<{ event_id: string }[]>`SELECT event_id FROM get_last_event(${id}, ${decider})`;
  const [row] = await sql<{ offset: string }[]>`
    SELECT "offset" FROM append_event(${type}, ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()},
                                      ${last?.event_id ?? null})`;
  return row?.offset as string;
}

const reached = async (view: string, id: string, offset: string) => {
  const [row] = await sql<{ state: string; parked_offset: string | null; parked_error: string | null }[]>`
    SELECT * FROM view_reached(${view}, ${id}, ${offset})`;
  return row;
};

/** Leases the view's streams and acknowledges everything leased. */
async function leaseAndAck(view: string) {
  const leased = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
    SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 100, 100, 60)`;
  for (const row of leased)
    await sql`SELECT * FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
  return leased;
}

describe('view_reached', () => {
  test('pending until a lease acknowledges the event, handled after; earlier events too', async () => {
    const { decider, view } = await setUp();
    const id = `s-${randomUUID()}`;
    const first = await append(decider, id);
    const second = await append(decider, id);
    expect(await reached(view, id, second)).toEqual({
      state: 'pending',
      parked_offset: null,
      parked_error: null,
    });
    // Read into the lock row, leased, not yet acknowledged: still pending.
    const [lease] = await sql<
      { lease_id: string }[]
    >`SELECT lease_id FROM lease_events(${view}, 10, 100, 60)`;
    expect((await reached(view, id, first))?.state).toBe('pending');
    await sql`SELECT * FROM ack_events(${view}, ${id}, ${lease?.lease_id ?? null}, ${first})`;
    expect((await reached(view, id, first))?.state).toBe('handled');
    expect((await reached(view, id, second))?.state).toBe('pending');
    await leaseAndAck(view);
    expect((await reached(view, id, second))?.state).toBe('handled');
  });

  test('a log batch that takes the stream whole: pending while its transaction runs, handled once it commits', async () => {
    const { decider, view } = await setUp();
    const id = `s-${randomUUID()}`;
    const offset = await append(decider, id);
    await sql.begin(async (tx) => {
      const events = await tx<{ offset: string }[]>`SELECT "offset" FROM claim_log_batch(${view}, 100)`;
      expect(events.map((e) => e.offset)).toEqual([offset]);
      expect((await reached(view, id, offset))?.state).toBe('pending');
    });
    expect(await sql`SELECT 1 FROM locks WHERE view = ${view} AND decider_id = ${id}`).toHaveLength(0);
    expect((await reached(view, id, offset))?.state).toBe('handled');
  });

  test('a parked event names itself; one that stopped its stream holds the later ones too', async () => {
    const { decider, view } = await setUp();
    const id = `s-${randomUUID()}`;
    const first = await append(decider, id);
    const second = await append(decider, id);
    const [lease] = await sql<{ lease_id: string }[]>`SELECT lease_id FROM lease_events(${view}, 10, 1, 60)`;
    await sql`SELECT fail_event(${view}, ${id}, ${lease?.lease_id ?? null}, ${first}, 'boom', 0, 1, true)`;
    expect(await reached(view, id, first)).toEqual({
      state: 'parked',
      parked_offset: first,
      parked_error: 'boom',
    });
    expect(await reached(view, id, second)).toEqual({
      state: 'parked',
      parked_offset: first,
      parked_error: 'boom',
    });
  });

  test('an event of a type the view does not project is handled once the view is past it', async () => {
    const { decider, view } = await setUp(['happened']);
    const id = `s-${randomUUID()}`;
    await append(decider, id, 'happened');
    const noted = await append(decider, id, 'noted');
    expect((await reached(view, id, noted))?.state).toBe('pending');
    await leaseAndAck(view);
    expect((await reached(view, id, noted))?.state).toBe('handled');
  });

  test('refuses a view that does not exist, an offset not of the stream, and a decider the view does not subscribe to', async () => {
    const { decider, view } = await setUp();
    const other = await setUp();
    const id = `s-${randomUUID()}`;
    const offset = await append(decider, id);
    expect(
      await failureOf(() => sql`SELECT * FROM view_reached('no-such-view', ${id}, ${offset})`),
    ).toMatchObject({
      code: 'P0002',
    });
    expect(
      await failureOf(() => sql`SELECT * FROM view_reached(${view}, 'other-stream', ${offset})`),
    ).toMatchObject({
      code: 'P0002',
    });
    expect(
      await failureOf(() => sql`SELECT * FROM view_reached(${other.view}, ${id}, ${offset})`),
    ).toMatchObject({
      code: '22023',
      constraint: 'views_subscription',
    });
  });
});

describe('wait_for_view', () => {
  test('returns handled as soon as another session acknowledges, long before its timeout', async () => {
    const { decider, view } = await setUp();
    const id = `s-${randomUUID()}`;
    const offset = await append(decider, id);
    const waiter = db.connect({ max: 1 });
    try {
      const started = Date.now();
      const waiting = waiter<
        { state: string }[]
      >`SELECT * FROM wait_for_view(${view}, ${id}, ${offset}, 60000)`;
      await new Promise((resolve) => setTimeout(resolve, 100));
      await leaseAndAck(view);
      const [row] = await waiting;
      expect(row?.state).toBe('handled');
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      await waiter.end();
    }
  });

  test('returns pending at its timeout, and refuses a snapshot that could never see the view move', async () => {
    const { decider, view } = await setUp();
    const id = `s-${randomUUID()}`;
    const offset = await append(decider, id);
    const [row] = await sql<{ state: string }[]>`SELECT * FROM wait_for_view(${view}, ${id}, ${offset}, 50)`;
    expect(row?.state).toBe('pending');
    const refused = await failureOf(() =>
      sql.begin(
        'ISOLATION LEVEL REPEATABLE READ',
        (tx) => tx`SELECT * FROM wait_for_view(${view}, ${id}, ${offset}, 50)`,
      ),
    );
    expect(refused).toMatchObject({ code: '25000' });
  });
});
