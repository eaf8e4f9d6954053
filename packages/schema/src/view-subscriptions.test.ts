/**
 * Views subscribe to what they project: the register_view and reset_view overloads that take deciders and event
 * types, on a real PostgreSQL. A view's lock rows are only those of streams it subscribes to, it is delivered only
 * the events it subscribes to, changing the subscription is a rebuild (as changing start_at is), and view_status
 * shows it. fstore-sql's register_view keeps registering views that see everything.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, describe, expect, test } from 'vitest';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const { sql } = db;

interface Leased {
  decider: string;
  decider_id: string;
  event: string;
  offset: string;
}

async function decider(events: string[]) {
  const name = `decider-${randomUUID()}`;
  for (const event of events) await sql`SELECT * FROM register_decider_event(${name}, ${event})`;
  return name;
}

/** Appends `events` (types) to a new stream of `deciderName`, chained; returns the stream id. */
async function stream(deciderName: string, events: string[]) {
  const deciderId = `stream-${randomUUID()}`;
  let previous: string | null = null;
  for (const event of events) {
    const eventId = randomUUID();
    await sql`SELECT * FROM append_event(${event}, ${eventId}, ${deciderName}, ${deciderId}, '{}', ${randomUUID()}, ${previous})`;
    previous = eventId;
  }
  return deciderId;
}

const view = () => `view-${randomUUID()}`;
const lease = (name: string) =>
  sql<Leased[]>`SELECT decider, decider_id, event, "offset" FROM lease_events(${name}, 1000, 100, 60)`;
const lockStreams = async (name: string) => {
  await sql`SELECT advance_view(${name})`;
  const rows = await sql<{ decider_id: string }[]>`SELECT decider_id FROM locks WHERE view = ${name}`;
  return new Set(rows.map((row) => row.decider_id));
};

describe('register_view with a subscription', () => {
  test('a view subscribed to one decider gets lock rows and events of that decider only', async () => {
    const orders = await decider(['placed']);
    const carts = await decider(['filled']);
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', ARRAY[${orders}]::text[], NULL)`;
    const order = await stream(orders, ['placed', 'placed']);
    const cart = await stream(carts, ['filled']);
    expect(await lockStreams(name)).toEqual(new Set([order]));
    const leased = await lease(name);
    expect(leased.map((row) => [row.decider_id, row.decider])).toEqual([
      [order, orders],
      [order, orders],
    ]);
    expect(leased.some((row) => row.decider_id === cart)).toBe(false);
  });

  test('a view subscribed to event types is delivered only those, in stream order', async () => {
    const tasks = await decider(['created', 'renamed', 'closed']);
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', NULL, ARRAY['created', 'closed']::text[])`;
    const task = await stream(tasks, ['created', 'renamed', 'renamed', 'closed']);
    const leased = await lease(name);
    expect(leased.filter((row) => row.decider_id === task).map((row) => row.event)).toEqual([
      'created',
      'closed',
    ]);
    // The lease ends at the last subscribed event, and acknowledging it leaves nothing behind.
    const [last] = leased.slice(-1);
    const [token] = await sql<{ lease_id: string }[]>`
      SELECT lease_id FROM locks WHERE view = ${name} AND decider_id = ${task}`;
    await sql`SELECT * FROM ack_events(${name}, ${task}, ${token?.lease_id ?? null}::uuid, ${last?.offset ?? null}::bigint)`;
    const [status] = await sql<{ events_behind: string }[]>`
      SELECT events_behind FROM view_status() WHERE view = ${name}`;
    expect(Number(status?.events_behind)).toBe(0);
  });

  test("fstore-sql's signatures register a view that sees every decider", async () => {
    const a = await decider(['happened']);
    const b = await decider(['happened']);
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch'::timestamp)`;
    const [first, second] = [await stream(a, ['happened']), await stream(b, ['happened'])];
    const streams = await lockStreams(name);
    expect(streams.has(first) && streams.has(second)).toBe(true);
    const [row] = await sql`SELECT subscribed_deciders, subscribed_events FROM views WHERE view = ${name}`;
    expect(row).toEqual({ subscribed_deciders: null, subscribed_events: null });
  });

  test('the subscription is stored sorted and without duplicates, and view_status shows it', async () => {
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, now()::timestamp, ARRAY['b', 'a', 'b']::text[], ARRAY['x']::text[])`;
    const [status] = await sql`
      SELECT subscribed_deciders, subscribed_events FROM view_status() WHERE view = ${name}`;
    expect(status).toEqual({ subscribed_deciders: ['a', 'b'], subscribed_events: ['x'] });
  });

  test('an empty list or a NULL in it is refused with 22023 views_subscription, and nothing is registered', async () => {
    for (const [deciders, types] of [
      ['{}', null],
      ['{a,NULL}', null],
      [null, '{}'],
      [null, '{x,NULL}'],
    ] as const) {
      const name = view();
      const failure = await failureOf(
        () =>
          sql`SELECT * FROM register_view(${name}, 500, now()::timestamp, ${deciders}::text[], ${types}::text[])`,
      );
      expect(failure).toMatchObject({ code: '22023', constraint: 'views_subscription' });
      expect(await sql`SELECT 1 FROM views WHERE view = ${name}`).toHaveLength(0);
    }
  });
});

describe('changing a subscription is a rebuild', () => {
  test('registering again with the same subscription keeps the progress; another one rebuilds from start_at', async () => {
    const orders = await decider(['placed']);
    const carts = await decider(['filled']);
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', ARRAY[${orders}]::text[], NULL)`;
    const order = await stream(orders, ['placed']);
    const cart = await stream(carts, ['filled']);
    const [leased] = await lease(name);
    const [token] = await sql<{ lease_id: string }[]>`
      SELECT lease_id FROM locks WHERE view = ${name} AND decider_id = ${order}`;
    await sql`SELECT * FROM ack_events(${name}, ${order}, ${token?.lease_id ?? null}::uuid, ${leased?.offset ?? null}::bigint)`;

    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', ARRAY[${orders}]::text[], NULL)`;
    expect(await lease(name)).toEqual([]);

    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', ARRAY[${orders}, ${carts}]::text[], NULL)`;
    const replayed = await lease(name);
    expect(replayed.map((row) => row.decider_id).sort()).toEqual([order, cart].sort());
  });

  test('reset_view with a subscription rebuilds even when start_at and subscription are unchanged', async () => {
    const orders = await decider(['placed']);
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch', ARRAY[${orders}]::text[], NULL)`;
    const order = await stream(orders, ['placed']);
    expect((await lease(name)).map((row) => row.decider_id)).toEqual([order]);
    // The lease is held: a rebuild clears it, and the holder's acknowledgement is then refused.
    const [token] = await sql<{ lease_id: string }[]>`
      SELECT lease_id FROM locks WHERE view = ${name} AND decider_id = ${order}`;
    await sql`SELECT * FROM reset_view(${name}, 'epoch', ARRAY[${orders}]::text[], NULL)`;
    const [offset] = await sql<{ offset: string }[]>`SELECT "offset" FROM events WHERE decider_id = ${order}`;
    expect(
      await failureOf(
        () =>
          sql`SELECT * FROM ack_events(${name}, ${order}, ${token?.lease_id ?? null}::uuid, ${offset?.offset ?? null}::bigint)`,
      ),
    ).toMatchObject({ code: '55P03', constraint: 'locks_lease_held' });
    expect((await lease(name)).map((row) => row.decider_id)).toEqual([order]);
  });

  test('reset_view with a subscription refuses an unknown view and a bad subscription', async () => {
    expect(
      await failureOf(() => sql`SELECT * FROM reset_view(${view()}, 'epoch', NULL, NULL)`),
    ).toMatchObject({ code: 'P0002' });
    const name = view();
    await sql`SELECT * FROM register_view(${name}, 500, 'epoch'::timestamp)`;
    expect(
      await failureOf(() => sql`SELECT * FROM reset_view(${name}, 'epoch', '{}'::text[], NULL)`),
    ).toMatchObject({ code: '22023', constraint: 'views_subscription' });
  });
});

describe('appends pay nothing for views', () => {
  test('an append writes no lock row, however many views are registered', async () => {
    const orders = await decider(['placed']);
    for (let i = 0; i < 20; i++) await sql`SELECT * FROM register_view(${view()}, 500, 'epoch'::timestamp)`;
    const before = await sql<{ count: string }[]>`SELECT count(*) FROM locks`;
    await stream(orders, ['placed', 'placed', 'placed']);
    const after = await sql<{ count: string }[]>`SELECT count(*) FROM locks`;
    expect(after[0]?.count).toBe(before[0]?.count);
    expect(
      await sql`SELECT tgname FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal ORDER BY tgname`,
    ).toEqual([{ tgname: 't_check_event_append' }, { tgname: 't_forbid_truncate' }]);
  });
});
