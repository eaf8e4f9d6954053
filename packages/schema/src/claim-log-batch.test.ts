/**
 * claim_log_batch: a consumer takes the next stretch of a view's log in the transaction that handles it, on a real
 * PostgreSQL. The events come in log order, their streams are recorded as handled and the frontier moves only if
 * that transaction commits; events from before start_at are passed over; the events of a stream that must keep going
 * through its lease (work pending, a lease, a stopped stream, events committed out of offset order) are read into its
 * lock row for that lease, and the batch goes on past them. Every view here subscribes to a decider of its own, so
 * the other tests' events do not reach it.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';
import { appendNext, appendOutOfOrder } from './test-support/out-of-order.js';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const { sql } = db;

interface Row {
  decider_id: string;
  event: string;
  offset: string;
}

/** A decider of its own with one event type, and a view subscribed to it only. */
async function setUp() {
  const decider = `decider-${randomUUID()}`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  const view = `view-${randomUUID()}`;
  await sql`SELECT * FROM register_view(${view}, 500, 'epoch', ARRAY[${decider}]::text[], NULL)`;
  // Past the other tests' events: a window counts every event of the log, subscribed or not.
  await sql`SELECT advance_view(${view})`;
  return { decider, view };
}

/** Appends `count` events to stream `id` (new or not) of `decider`, chained on its last event; returns their offsets. */
async function append(client: postgres.Sql, decider: string, id: string, count = 1) {
  const offsets: number[] = [];
  for (let i = 0; i < count; i++) offsets.push(await appendNext(client, decider, id));
  return offsets;
}

/** claim_log_batch in a transaction that commits (or rolls back), returning (stream, offset) pairs. */
async function claim(view: string, max = 1000, outcome: 'commit' | 'rollback' = 'commit') {
  let rows: Row[] = [];
  await sql
    .begin(async (tx) => {
      rows = await tx<Row[]>`SELECT decider_id, event, "offset" FROM claim_log_batch(${view}, ${max})`;
      if (outcome === 'rollback') throw new Rollback();
    })
    .catch((error) => {
      if (!(error instanceof Rollback)) throw error;
    });
  return rows.map((row) => [row.decider_id, Number(row.offset)] as const);
}
class Rollback extends Error {}

async function lockRow(view: string, id: string) {
  const [row] = await sql<{ offset: string; last_offset: string }[]>`
    SELECT "offset", last_offset FROM locks WHERE view = ${view} AND decider_id = ${id}`;
  return row && { offset: Number(row.offset), lastOffset: Number(row.last_offset) };
}

/** Leases with the five-argument lease_events (advancing `advance` events first) and acknowledges what it got. */
async function leaseAndAck(view: string, advance: number) {
  const rows = await sql<(Row & { lease_id: string })[]>`
    SELECT lease_id, decider_id, event, "offset" FROM lease_events(${view}, 100, 100, 60, ${advance})`;
  const last = new Map<string, Row & { lease_id: string }>();
  for (const row of rows) last.set(row.decider_id, row);
  for (const row of last.values())
    await sql`SELECT ack_leases(${view}, ${sql.json([{ decider_id: row.decider_id, lease_id: row.lease_id, offset: Number(row.offset) }])})`;
  return rows.map((row) => [row.decider_id, Number(row.offset)] as const);
}

describe('claim_log_batch takes new streams straight from the log', () => {
  test('returns the events in log order and records their streams as handled when the transaction commits', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const b = `b-${randomUUID()}`;
    const [a1, a2] = await append(sql, decider, a, 2);
    const [b1] = await append(sql, decider, b);
    expect(await claim(view)).toEqual([
      [a, a1],
      [a, a2],
      [b, b1],
    ]);
    // Streams taken whole get no lock row: no row means handled up to the frontier.
    expect(await lockRow(view, a)).toBeUndefined();
    expect(await lockRow(view, b)).toBeUndefined();
    // Nothing is left to claim or to lease: no event comes twice.
    expect(await claim(view)).toEqual([]);
    expect(await leaseAndAck(view, 1000)).toEqual([]);
    // A stream handled this way is taken again from the log when it grows.
    const [a3] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a3]]);
    // And when advance_view reads it into a lock row instead, the row starts after what the batches handled.
    const [a4] = await append(sql, decider, a);
    await sql`SELECT advance_view(${view})`;
    expect(await lockRow(view, a)).toEqual({ offset: a4, lastOffset: a3 });
    expect(await leaseAndAck(view, 0)).toEqual([[a, a4]]);
  });

  test('a rolled-back transaction gives the events back: nothing moved', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    expect(await claim(view, 1000, 'rollback')).toEqual([[a, a1]]);
    expect(await lockRow(view, a)).toBeUndefined();
    expect(await claim(view)).toEqual([[a, a1]]);
  });

  test('stops after max events and goes on from there', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const offsets = await append(sql, decider, a, 5);
    expect((await claim(view, 2)).map(([, offset]) => offset)).toEqual(offsets.slice(0, 2));
    expect((await claim(view, 2)).map(([, offset]) => offset)).toEqual(offsets.slice(2, 4));
    expect((await claim(view, 2)).map(([, offset]) => offset)).toEqual(offsets.slice(4));
  });

  test('passes over the events of deciders the view does not subscribe to', async () => {
    const { decider, view } = await setUp();
    const other = await setUp();
    const [x1] = await append(sql, other.decider, `x-${randomUUID()}`);
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a1]]);
    const [frontier] = await sql<
      { offset: string }[]
    >`SELECT "offset" FROM view_frontiers WHERE view = ${view}`;
    expect(Number(frontier?.offset)).toBeGreaterThanOrEqual(a1 as number);
    expect(x1).toBeLessThan(a1 as number);
  });
});

describe('claim_log_batch and event types', () => {
  test('a view subscribed to some event types gets only those, and the stream follows on past the others', async () => {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'noted')`;
    const view = `view-${randomUUID()}`;
    await sql`SELECT * FROM register_view(${view}, 500, 'epoch', ARRAY[${decider}]::text[], ARRAY['happened']::text[])`;
    await sql`SELECT advance_view(${view})`;
    const a = `a-${randomUUID()}`;
    const appendTyped = async (type: string) => {
      const [last] = await sql<{ event_id: string }[]>`
        SELECT event_id FROM events WHERE decider_id = ${a} ORDER BY "offset" DESC LIMIT 1`;
      const [row] = await sql<{ offset: string }[]>`
        SELECT "offset" FROM append_event(${type}, ${randomUUID()}, ${decider}, ${a}, '{}', ${randomUUID()},
                                          ${last?.event_id ?? null})`;
      return Number(row?.offset);
    };
    const a1 = await appendTyped('happened');
    await appendTyped('noted');
    const a3 = await appendTyped('happened');
    expect(await claim(view)).toEqual([
      [a, a1],
      [a, a3],
    ]);
    await appendTyped('noted');
    const a5 = await appendTyped('happened');
    expect(await claim(view)).toEqual([[a, a5]]);
    expect(await lockRow(view, a)).toBeUndefined();
    // Read into a lock row later, the stream starts after its last subscribed event the batches handled.
    await appendTyped('noted');
    const a7 = await appendTyped('happened');
    await sql`SELECT advance_view(${view})`;
    expect(await lockRow(view, a)).toEqual({ offset: a7, lastOffset: a5 });
    expect(await leaseAndAck(view, 0)).toEqual([[a, a7]]);
  });
});

describe('claim_log_batch leaves streams that need their lease to leases', () => {
  test('a stream with unhandled events in its lock row: the batch reads its next events into that row, for its lease, and goes on past them', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    await sql`SELECT advance_view(${view})`; // a1 is now a lease's business
    const b = `b-${randomUUID()}`;
    const c = `c-${randomUUID()}`;
    const [b1] = await append(sql, decider, b);
    const [a2] = await append(sql, decider, a);
    const [c1] = await append(sql, decider, c);
    expect(await claim(view)).toEqual([
      [b, b1],
      [c, c1],
    ]);
    expect(await lockRow(view, a)).toMatchObject({ offset: a2 });
    expect(await leaseAndAck(view, 1)).toEqual([
      [a, a1],
      [a, a2],
    ]);
    expect(await claim(view)).toEqual([]);
  });

  test('a batch whose events all went to lock rows returns nothing, and says in the transaction that the frontier moved', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    await append(sql, decider, a);
    await sql`SELECT advance_view(${view})`;
    const [a2] = await append(sql, decider, a);
    const moved = () =>
      sql.begin(async (tx) => {
        const rows = await tx`SELECT * FROM claim_log_batch(${view}, 1000)`;
        const [setting] = await tx<{ moved: string | null }[]>`
          SELECT current_setting('fstore.log_batch_moved', true) AS moved`;
        return { rows: rows.length, moved: setting?.moved ?? null };
      });
    expect(await moved()).toEqual({ rows: 0, moved: 'true' });
    expect(await lockRow(view, a)).toMatchObject({ offset: a2 });
    // Nothing new: the frontier stays, and the setting is not 'true' (empty, once a session has seen it, or unset).
    const again = await moved();
    expect(again.rows).toBe(0);
    expect(again.moved).not.toBe('true');
  });

  test('a claim that finds the frontier held by another consumer, with events waiting, says so in its transaction', async () => {
    const { decider, view } = await setUp();
    await append(sql, decider, `a-${randomUUID()}`);
    await append(sql, decider, `b-${randomUUID()}`);
    const attempt = () =>
      sql.begin(async (tx) => {
        const rows = await tx`SELECT * FROM claim_log_batch(${view}, 1000)`;
        const [said] = await tx<{ held: string | null; moved: string | null }[]>`
          SELECT current_setting('fstore.log_batch_held', true) AS held,
                 current_setting('fstore.log_batch_moved', true) AS moved`;
        return { rows: rows.length, held: said?.held === 'true', moved: said?.moved === 'true' };
      });
    await sql.begin(async (holder) => {
      expect(await holder`SELECT * FROM claim_log_batch(${view}, 1)`).toHaveLength(1);
      expect(await attempt()).toEqual({ rows: 0, held: true, moved: false });
    });
    // The holder committed: the next claim takes the rest, and then finds nothing, held by nobody.
    expect(await attempt()).toEqual({ rows: 1, held: false, moved: true });
    expect(await attempt()).toEqual({ rows: 0, held: false, moved: false });
  });

  test('a stream whose lock row is leased, or stopped, is not taken', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    await append(sql, decider, a);
    await sql`SELECT advance_view(${view})`;
    const [leased] = await sql<{ lease_id: string; offset: string }[]>`
      SELECT lease_id, "offset" FROM lease_events(${view}, 10, 100, 60, 0)`;
    expect(leased).toBeDefined();
    const [a2] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([]);
    // Stopped: caught up, but locked for ever.
    const s = `s-${randomUUID()}`;
    await append(sql, decider, s);
    await sql`SELECT advance_view(${view})`;
    await sql`UPDATE locks SET last_offset = "offset", locked_until = 'infinity' WHERE view = ${view} AND decider_id = ${s}`;
    await append(sql, decider, s);
    expect(await claim(view)).toEqual([]);
    expect(await lockRow(view, a)).toMatchObject({ offset: a2 });
  });

  test('events of one stream committed out of offset order go through its lease, in offset order', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a1]]);
    const [a2, a3] = await appendOutOfOrder(sql, decider, a);
    // a3 has the lower transaction id: read alone (one event) or with a2, the stream is not taken.
    expect(await claim(view, 1)).toEqual([]);
    expect(await claim(view, 10)).toEqual([]);
    // Advancing one event reads a3 into the lock row; the lease delivers a2 and a3 by offset, ahead of the frontier.
    expect(await leaseAndAck(view, 1)).toEqual([
      [a, a2],
      [a, a3],
    ]);
    // a2 is still past the frontier: a batch passes over it (handled), and takes the stream's next event.
    expect(await claim(view)).toEqual([]);
    const [a4] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a4]]);
    expect(await lockRow(view, a)).toEqual({ offset: a4, lastOffset: a4 });
  });

  test('the same, with both events in one window: the stream is not taken; its lease delivers them in offset order', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a1]]);
    const [a2, a3] = await appendOutOfOrder(sql, decider, a);
    // The window holds a3 then a2 (log order), each chained on the one before it by offset: taken, they would come
    // out of order.
    expect(await claim(view, 10)).toEqual([]);
    expect(await leaseAndAck(view, 0)).toEqual([
      [a, a2],
      [a, a3],
    ]);
  });

  test('events from before start_at are passed over, as advance_view does; the stream is recorded past them', async () => {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    const a = `a-${randomUUID()}`;
    await append(sql, decider, a);
    // Views keep start_at to the millisecond: a1 must be older than that.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [{ start } = { start: '' }] = await sql<
      { start: string }[]
    >`SELECT now()::timestamp::text AS start`;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [a2] = await append(sql, decider, a);
    const view = `view-${randomUUID()}`;
    await sql`SELECT * FROM register_view(${view}, 500, ${start}::timestamp, ARRAY[${decider}]::text[], NULL)`;
    expect(await claim(view)).toEqual([[a, a2]]);
    expect(await lockRow(view, a)).toBeUndefined();
    expect(await leaseAndAck(view, 10)).toEqual([]);
  });

  test('a stream whose only events in the batch are from before start_at is passed over: only its later events come', async () => {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    const a = `a-${randomUUID()}`;
    await append(sql, decider, a);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [{ start } = { start: '' }] = await sql<
      { start: string }[]
    >`SELECT now()::timestamp::text AS start`;
    const view = `view-${randomUUID()}`;
    await sql`SELECT * FROM register_view(${view}, 500, ${start}::timestamp, ARRAY[${decider}]::text[], NULL)`;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await claim(view)).toEqual([]);
    expect(await lockRow(view, a)).toBeUndefined();
    // Its next event, after start_at, is delivered, and the old one never is: by a batch, or by a lease.
    const [a2] = await append(sql, decider, a);
    expect(await claim(view)).toEqual([[a, a2]]);
    const [a3] = await append(sql, decider, a);
    await sql`SELECT advance_view(${view})`;
    expect(await lockRow(view, a)).toEqual({ offset: a3, lastOffset: a2 });
    expect(await leaseAndAck(view, 0)).toEqual([[a, a3]]);
  });
  test('an event from before start_at that follows a later one by offset: the stream goes to its lease, as advance_view reads it', async () => {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    const a = `a-${randomUUID()}`;
    await append(sql, decider, a);
    // A transaction that starts now gives its events this created_at (now()), whenever it appends them.
    const early = await sql.reserve();
    try {
      await early`BEGIN`;
      await early`SELECT now()`;
      await new Promise((resolve) => setTimeout(resolve, 20));
      const [{ start } = { start: '' }] = await sql<
        { start: string }[]
      >`SELECT now()::timestamp::text AS start`;
      await new Promise((resolve) => setTimeout(resolve, 20));
      const view = `view-${randomUUID()}`;
      await sql`SELECT * FROM register_view(${view}, 500, ${start}::timestamp, ARRAY[${decider}]::text[], NULL)`;
      const [a2] = await append(sql, decider, a);
      const [a3] = await append(early, decider, a);
      await early`COMMIT`;
      // a2 (after start_at) is followed by a3 (from before it): a batch does not judge that stream itself.
      expect(await claim(view)).toEqual([]);
      const row = await lockRow(view, a);
      expect(row?.offset).toBe(a3);
      // What advance_view would have written: handled up to the last event from before start_at.
      expect(row?.lastOffset).toBe(a3);
      expect(a2).toBeLessThan(a3 as number);
    } finally {
      early.release();
    }
  });
});

describe('claim_log_batch among consumers', () => {
  test('a second consumer gets nothing while the first holds the batch, and advance_view passes nothing', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    const first = await sql.reserve();
    try {
      await first`BEGIN`;
      const held = await first<Row[]>`SELECT decider_id, "offset" FROM claim_log_batch(${view}, 1000)`;
      expect(held.map((row) => Number(row.offset))).toEqual([a1]);
      expect(await claim(view)).toEqual([]);
      const [advanced] = await sql<{ advance_view: number }[]>`SELECT advance_view(${view})`;
      expect(advanced?.advance_view).toBe(0);
      await first`COMMIT`;
    } finally {
      first.release();
    }
    expect(await leaseAndAck(view, 1000)).toEqual([]);
  });
});

describe('claim_log_batch refuses what would lose events', () => {
  test('outside a transaction block, as psql runs a statement on its own, it is refused and moves nothing', async () => {
    const { decider, view } = await setUp();
    const a = `a-${randomUUID()}`;
    const [a1] = await append(sql, decider, a);
    // The simple query protocol, as psql sends it. (Over the extended protocol a driver's autocommit statement
    // cannot be told from one in a transaction: the docs say to call it in one.)
    const failure = await failureOf(() =>
      sql.unsafe(`SELECT * FROM claim_log_batch('${view}', 10)`).simple(),
    );
    expect(failure.code).toBe('25P01');
    expect(failure.message).toMatch(/inside a transaction/);
    expect(await claim(view)).toEqual([[a, a1]]);
  });

  test('bad arguments are refused', async () => {
    const { view } = await setUp();
    const inTransaction = (fn: (tx: postgres.TransactionSql) => Promise<unknown>) =>
      failureOf(() => sql.begin(fn));
    expect((await inTransaction((tx) => tx`SELECT * FROM claim_log_batch(${view}, 0)`)).code).toBe('22023');
    expect(
      (await inTransaction((tx) => tx`SELECT * FROM claim_log_batch(${`missing-${randomUUID()}`}, 10)`)).code,
    ).toBe('P0002');
    expect((await failureOf(() => sql`SELECT * FROM lease_events(${view}, 10, 10, 60, -1)`)).code).toBe(
      '22023',
    );
  });
});
