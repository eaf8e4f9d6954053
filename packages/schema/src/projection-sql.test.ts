/**
 * The projection workers' SQL on a real PostgreSQL through postgres.js: the shared specification, plus what needs
 * two connections at once. Each race is staged as in concurrency.test.ts: the first connection holds its
 * transaction open until the second is seen waiting on a lock (or, for SKIP LOCKED, seen not waiting).
 */
import { randomUUID } from 'node:crypto';
import { backendPid, createTestDatabase, waitUntilBlocked } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';
import { describeProjectionSql } from './test-support/projection-sql.suite.js';
import { postgresJsClient } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());

describeProjectionSql('PostgreSQL via postgres.js', async () => postgresJsClient(db.sql), {
  // postgres.js runs a transaction on one connection of the pool, reserved for it until it ends.
  transaction: async (fn) =>
    (await db.sql.begin((tx) => fn(postgresJsClient(tx as unknown as postgres.Sql)))) as Awaited<
      ReturnType<typeof fn>
    >,
  // A connection of its own, dedicated to LISTEN, as a worker's wake-up listener would have.
  listen: async (channel, onNotify) => {
    const { unlisten } = await db.sql.listen(channel, onNotify);
    return unlisten;
  },
});

describe("projection workers' SQL between two connections (postgres.js)", () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Outcome of a promise that settles later, without an unhandled rejection meanwhile. */
  function settle<T>(promise: Promise<T>) {
    return promise.then(
      (value) => ({ ok: true as const, value }),
      (error: postgres.PostgresError) => ({ ok: false as const, error }),
    );
  }

  /** A fresh view (start_at now), then `count` fresh streams of `eventsEach` events each. */
  async function viewWithStreams(count: number, eventsEach: number) {
    const decider = `decider-${randomUUID()}`;
    await db.sql`SELECT * FROM register_decider_event(${decider}, 'e1')`;
    const view = `view-${randomUUID()}`;
    await db.sql`SELECT * FROM register_view(${view})`;
    const streams: { deciderId: string; offsets: number[] }[] = [];
    for (let s = 0; s < count; s++) {
      const deciderId = `stream-${randomUUID()}`;
      const events = Array.from({ length: eventsEach }, () => ({
        event: 'e1',
        event_id: randomUUID(),
        data: {},
      }));
      const rows = await db.sql<{ offset: string }[]>`
        SELECT * FROM append_events(${decider}, ${deciderId}, NULL, ${randomUUID()}, ${JSON.stringify(events)}::text::jsonb)`;
      streams.push({ deciderId, offsets: rows.map((r) => Number(r.offset)) });
    }
    // The lock rows exist before the race (the first lease to advance the view would hold them uncommitted).
    await db.sql`SELECT advance_view(${view})`;
    return { view, streams };
  }

  type Leased = { lease_id: string; decider_id: string; offset: string }[];
  const lease = (sql: postgres.Sql | postgres.TransactionSql, view: string, streams = 10, seconds = 300) =>
    sql<Leased>`SELECT * FROM lease_events(${view}, ${streams}::int, 100, ${seconds}::int)`;

  test('two workers leasing at once get different streams: the second skips what the first is leasing', async () => {
    const { view, streams } = await viewWithStreams(2, 2);
    const one = db.connect({ max: 1 });
    const two = db.connect({ max: 1 });
    let second: Leased = [];
    const first = await one.begin(async (tx) => {
      const rows = await lease(tx, view, 1);
      // Not committed yet: the second worker neither waits for it nor takes the same stream.
      second = await lease(two, view, 10);
      return rows;
    });
    expect(new Set(first.map((r) => r.decider_id))).toEqual(new Set([streams[0]?.deciderId]));
    expect(new Set(second.map((r) => r.decider_id))).toEqual(new Set([streams[1]?.deciderId]));
    expect(await lease(db.sql, view)).toEqual([]);
  });

  test('an ack racing a take-over of its expired lease waits for it, then is refused', async () => {
    const { view, streams } = await viewWithStreams(1, 1);
    const deciderId = streams[0]?.deciderId ?? '';
    const offset = streams[0]?.offsets[0] ?? 0;
    const [a] = await lease(db.sql, view, 1, 1);
    await sleep(1100);
    const one = db.connect({ max: 1 });
    const two = db.connect({ max: 1 });
    const twoPid = await backendPid(two);
    let late: ReturnType<typeof settle> | undefined;
    const [b] = await one.begin(async (tx) => {
      const rows = await lease(tx, view, 1);
      late = settle(two`SELECT * FROM ack_events(${view}, ${deciderId}, ${a?.lease_id ?? ''}, ${offset})`);
      await waitUntilBlocked(db.sql, twoPid);
      return rows;
    });
    const outcome = await late;
    expect(outcome?.ok).toBe(false);
    expect(outcome?.ok === false && outcome.error).toMatchObject({
      code: '55P03',
      constraint_name: 'locks_lease_held',
    });
    const [lock] = await db.sql<{ lease_id: string; last_offset: string }[]>`
      SELECT lease_id, last_offset FROM locks WHERE view = ${view} AND decider_id = ${deciderId}`;
    expect(lock).toEqual({ lease_id: b?.lease_id, last_offset: '0' });
  });

  test('a take-over racing an ack in progress skips the stream, and finds nothing left once it commits', async () => {
    const { view, streams } = await viewWithStreams(1, 1);
    const deciderId = streams[0]?.deciderId ?? '';
    const offset = streams[0]?.offsets[0] ?? 0;
    const [a] = await lease(db.sql, view, 1, 1);
    await sleep(1100);
    const one = db.connect({ max: 1 });
    let taken: Leased = [];
    await one.begin(async (tx) => {
      await tx`SELECT * FROM ack_events(${view}, ${deciderId}, ${a?.lease_id ?? ''}, ${offset})`;
      taken = await lease(db.sql, view);
    });
    expect(taken).toEqual([]);
    expect(await lease(db.sql, view)).toEqual([]);
  });

  describe('set_wakeups', () => {
    const triggers = async () => {
      const [row] = await db.sql<{ count: number }[]>`
        SELECT count(*)::int AS count FROM pg_trigger
        WHERE tgrelid = 'events'::regclass AND tgname = 't_notify_events_appended'`;
      return row?.count;
    };

    /** Runs set_wakeups(enabled) on two connections at once, the first holding its transaction open. */
    async function race(enabled: boolean) {
      const one = db.connect({ max: 1 });
      const two = db.connect({ max: 1 });
      const twoPid = await backendPid(two);
      let late: ReturnType<typeof settle> | undefined;
      await one.begin(async (tx) => {
        await tx`SELECT set_wakeups(${enabled})`;
        late = settle(two<{ set_wakeups: boolean }[]>`SELECT set_wakeups(${enabled})`);
        await waitUntilBlocked(db.sql, twoPid);
      });
      return late;
    }

    // Several workers starting at once, each turning wake-ups on, is what "idempotent" has to survive. Today the
    // second one fails: it checks pg_trigger before it takes the lock on events, and creates the trigger the first
    // one has just committed (42710 duplicate_object).
    test('two connections turning wake-ups on at once both succeed, with one trigger', async () => {
      try {
        const outcome = await race(true);
        expect(outcome?.ok === false ? outcome.error.message : undefined).toBeUndefined();
        expect(outcome?.ok && outcome.value).toEqual([{ set_wakeups: true }]);
        expect(await triggers()).toBe(1);
      } finally {
        await db.sql`SELECT set_wakeups(false)`;
      }
    });

    test('two connections turning wake-ups off at once both succeed', async () => {
      await db.sql`SELECT set_wakeups(true)`;
      const outcome = await race(false);
      expect(outcome?.ok && outcome.value).toEqual([{ set_wakeups: false }]);
      expect(await triggers()).toBe(0);
    });
  });
});
