/**
 * The SQL API under a YugabyteDB profile, on real PostgreSQL: what YugabyteDB does differently that matters to an
 * event store, reproduced where no YugabyteDB runs.
 * - Transactions run under REPEATABLE READ by default (`ALTER DATABASE … SET default_transaction_isolation`):
 *   YSQL's snapshot isolation. A transaction sees one snapshot, and updating a row that changed after it fails
 *   with 40001 instead of waiting and re-reading.
 * - The offset sequence hands each connection a cached block of values (`ALTER SEQUENCE … CACHE 50`; YugabyteDB
 *   caches 100 per connection unless ysql_sequence_cache_minval=0), so offsets do not follow the order of
 *   appends across connections.
 * - Clients retry 40001 (serialization failure) and 40P01 (deadlock).
 * It shows the ordering problem, checks what the append trigger does about it (within a stream, offsets follow the
 * previous_id chain however the blocks interleave), races writers and a consumer on one stream with a retrying
 * client, checks that views deliver every event once while writers' commits interleave (one transaction held open,
 * one rolled back), and runs the single-connection SQL API specification under the profile.
 *
 * What a YSQL user must change (docs/yugabytedb-and-aurora.md, "The frontier on YugabyteDB", with the sources):
 * - YSQL has no transaction ids (yugabyte-db#15638): no `xid8`, `pg_current_xact_id()`, `pg_current_snapshot()` or
 *   `xmin` that mean anything across nodes, so the frontier of migrations 0009-0010 (events of transactions below
 *   log_horizon()) cannot run there, and neither can the events table's `DEFAULT pg_current_xact_id()`.
 * - YSQL has no statement triggers with transition tables (yugabyte-db#1668), so 0002's append trigger cannot be
 *   created either.
 * - So a YSQL install runs the migrations by hand on YSQL built on PostgreSQL 15 (2025.1 or later), skips those two
 *   statements (and 0010's frontier seeding), then runs the SQL of the doc's `ysql-bookkeeping` section: the column
 *   defaults to 0; a row-level append trigger writes each subscribed view's lock row in the appending transaction
 *   (gap-safe: they commit together); registration writes lock rows for existing streams under the registration
 *   gate (which 0011 drops, so it comes back); advance_view and log_head read no snapshot, log_horizon refuses;
 *   the (transaction_id, offset) index goes. Views are registered under READ COMMITTED, or while nothing appends.
 *   The test below installs exactly that SQL on PostgreSQL and checks that nothing left reads a transaction id,
 *   and that views fed by it deliver every event once under the profile.
 */
import { randomUUID } from 'node:crypto';
import { backendPid, createTestDatabase, waitUntilBlocked } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { readmeBlocks } from '@fstore/test-harness/readme';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';
import {
  deliverWhileWritersInterleave,
  type Interleaving,
  registerWhileWritersAppend,
} from './test-support/interleaved-appends.js';
import { describeProjectionSql } from './test-support/projection-sql.suite.js';
import { describeSqlApi } from './test-support/sql-api.suite.js';
import { postgresJsClient, type Row, type SqlClient } from './test-support/sql-client.js';

const cacheSize = 50;
const decider = 'yugabyte-profile';

/**
 * A database of this file's own under the profile, with the decider registered. Only sessions opened after the
 * ALTERs read the new defaults: everything connects anew through `connect`.
 */
async function profiledDatabase() {
  const database = await createTestDatabase();
  const [sequence] = await database.sql<
    { name: string }[]
  >`SELECT pg_get_serial_sequence('events', 'offset') AS name`;
  await database.sql.unsafe(
    `ALTER DATABASE "${database.name}" SET default_transaction_isolation = 'repeatable read'`,
  );
  await database.sql.unsafe(`ALTER SEQUENCE ${sequence?.name} CACHE ${cacheSize}`);
  const connect = (max = 1) => database.connect({ max });
  await connect()`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  return { database, connect, sequenceName: sequence?.name ?? '' };
}

const { database: db, connect, sequenceName } = await profiledDatabase();
afterAll(() => db.drop());

interface Appended {
  event_id: string;
  offset: string;
  previous_id: string | null;
}

function append(sql: postgres.Sql | postgres.TransactionSql, deciderId: string, previousId: string | null) {
  return sql<Appended[]>`
    SELECT event_id, "offset", previous_id
    FROM append_event('happened', ${randomUUID()}, ${decider}, ${deciderId}, '{}', ${randomUUID()}, ${previousId})`;
}

async function appendOne(sql: postgres.Sql, deciderId: string, previousId: string | null) {
  const [row] = await append(sql, deciderId, previousId);
  if (!row) throw new Error('append_event returned nothing');
  return { eventId: row.event_id, offset: Number(row.offset) };
}

/** A stream's problems: its chain (in offset order) broken or forked, or not `expected` events long. */
async function chainProblems(deciderId: string, expected: number): Promise<string[]> {
  const rows = await db.sql<Appended[]>`SELECT event_id, "offset", previous_id FROM get_events(${deciderId})`;
  const problems = rows.flatMap((row, index) => {
    const before = index === 0 ? null : (rows[index - 1]?.event_id ?? null);
    return row.previous_id === before
      ? []
      : [`offset ${row.offset} follows ${row.previous_id}, not ${before}`];
  });
  if (rows.length !== expected) problems.push(`${rows.length} events, not ${expected}`);
  return problems;
}

const sqlState = (error: unknown) => (error as { code?: string }).code ?? '';

/**
 * Runs `attempt` until it succeeds, again after a short jittered pause on 40001 or 40P01 (the transaction was
 * rolled back and may simply be run again) and on the other SQLSTATEs in `conflicts` (an optimistic conflict:
 * `attempt` reads the stream again). Counts what it retried by SQLSTATE and constraint (for 40001, by where).
 */
async function retrying<T>(
  attempt: () => Promise<T>,
  seen: Map<string, number>,
  conflicts: readonly string[] = [],
): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const code = sqlState(error);
      if (!['40001', '40P01', ...conflicts].includes(code) || tries >= 200) throw error;
      const { constraint_name: constraint, where } = error as { constraint_name?: string; where?: string };
      // For 40001, where it happened: the PL/pgSQL line that updated a row changed since the snapshot.
      const context =
        code === '40001'
          ? where
              ?.split('\n')[0]
              ?.replace(/^PL\/pgSQL function /, '')
              .slice(0, 60)
          : undefined;
      const key = constraint ? `${code} ${constraint}` : context ? `${code} in ${context}` : code;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** tries)));
    }
  }
}

describe('the YugabyteDB profile on PostgreSQL', () => {
  test('new sessions run REPEATABLE READ, and the offset sequence hands out blocks of 50', async () => {
    const sql = connect();
    const [isolation] = await sql<{ transaction_isolation: string }[]>`SHOW transaction_isolation`;
    expect(isolation?.transaction_isolation).toBe('repeatable read');
    const [cache] = await sql<{ cache_size: string }[]>`
      SELECT cache_size FROM pg_sequences WHERE schemaname || '.' || sequencename = ${sequenceName}`;
    expect(Number(cache?.cache_size)).toBe(cacheSize);
  });

  test('the ordering problem: across streams, offsets do not follow the order in which appends committed', async () => {
    const one = connect();
    const two = connect();
    // Each connection takes a block of 50 values on its first append.
    const a = await appendOne(one, `a-${randomUUID()}`, null);
    const b = await appendOne(two, `b-${randomUUID()}`, null);
    const c = await appendOne(one, `c-${randomUUID()}`, null);
    // Committed in the order a, b, c; ordered by offset a, c, b.
    expect(b.offset).toBeGreaterThanOrEqual(a.offset + cacheSize);
    expect(c.offset).toBe(a.offset + 1);
    expect(c.offset).toBeLessThan(b.offset);
    // So a reader that keeps its place in the global log by offset misses c: it read b, and c came after.
    const afterB = await db.sql<{ event_id: string }[]>`
      SELECT event_id FROM events WHERE "offset" > ${b.offset} AND event_id IN (${a.eventId}, ${b.eventId}, ${c.eventId})`;
    expect(afterB).toEqual([]);
  });

  test('within one stream, offsets follow the previous_id chain: the append trigger draws again past a stale cached block', async () => {
    const low = connect();
    const high = connect();
    await appendOne(low, `warm-${randomUUID()}`, null); // low's block comes first…
    await appendOne(high, `warm-${randomUUID()}`, null); // …high's block after it
    const stream = `alternating-${randomUUID()}`;
    const chain: { eventId: string; offset: number; by: string; cachedNext: number }[] = [];
    let previous: string | null = null;
    for (let turn = 0; turn < 8; turn++) {
      const [by, sql] = turn % 2 === 0 ? (['high', high] as const) : (['low', low] as const);
      // What this connection's cache would give the next event without the trigger: one more value of it, on a
      // stream of its own.
      const probe = await appendOne(sql, `probe-${randomUUID()}`, null);
      const appended = await appendOne(sql, stream, previous);
      chain.push({ ...appended, by, cachedNext: probe.offset + 1 });
      previous = appended.eventId;
    }
    // Without the trigger, the low connection's events would have gone below the high one's before them.
    expect(
      chain.some((event, index) => index > 0 && event.cachedNext < (chain[index - 1]?.offset ?? 0)),
    ).toBe(true);
    const offsets = chain.map((event) => event.offset);
    expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
    expect(new Set(offsets).size).toBe(offsets.length);
    expect(await chainProblems(stream, chain.length)).toEqual([]);

    // append_events too: a batch from the low connection after the high one's event.
    const head = await appendOne(high, stream, previous);
    const events = Array.from({ length: 3 }, () => ({ event: 'happened', event_id: randomUUID(), data: {} }));
    const batch = await low<Appended[]>`
      SELECT event_id, "offset", previous_id FROM append_events(${decider}, ${stream}, ${head.eventId}, ${randomUUID()},
        ${JSON.stringify(events)}::text::jsonb)`;
    const batchOffsets = batch.map((row) => Number(row.offset));
    expect(batchOffsets[0]).toBeGreaterThan(head.offset);
    expect(batchOffsets).toEqual([...batchOffsets].sort((x, y) => x - y));
    expect(await chainProblems(stream, chain.length + 4)).toEqual([]);
  });

  test('writers racing on one stream, and a consumer leasing it, under REPEATABLE READ: 40001 and unique violations, retried; the chain stays whole', async () => {
    const stream = `contended-${randomUUID()}`;
    const view = `view-${randomUUID()}`;
    // Reading from now on: the streams of the tests before are caught up for it.
    await connect()`SELECT * FROM register_view(${view}, now()::timestamp, 30)`;
    const writers = 8;
    const appendsEach = 12;
    const seen = { transaction: new Map<string, number>(), twoStatements: new Map<string, number>() };
    const conflicts = ['23505', '23514'];

    // Half the writers read the stream's last event and append in one transaction (one snapshot for both); the
    // other half as the store does, in two statements: get_last_event, then append_events with that expectation.
    const writing = Array.from({ length: writers }, async (_, index) => {
      const sql = connect();
      for (let count = 0; count < appendsEach; count++) {
        if (index % 2 === 0) {
          await retrying(
            () =>
              sql.begin(async (tx) => {
                const [last] = await tx<
                  { event_id: string }[]
                >`SELECT event_id FROM get_last_event(${stream}, ${decider})`;
                await append(tx, stream, last?.event_id ?? null);
              }),
            seen.transaction,
            conflicts,
          );
        } else {
          await retrying(
            async () => {
              const [last] = await sql<
                { event_id: string }[]
              >`SELECT event_id FROM get_last_event(${stream}, ${decider})`;
              const events = [{ event: 'happened', event_id: randomUUID(), data: {} }];
              await sql`SELECT 1 FROM append_events(${decider}, ${stream}, ${last?.event_id ?? null}, ${randomUUID()},
                ${JSON.stringify(events)}::text::jsonb)`;
            },
            seen.twoStatements,
            conflicts,
          );
        }
      }
    });

    // A consumer leases the stream and acknowledges what it got, in one transaction, meanwhile and until it is
    // caught up: the lock row it updates is the one every append moves. Writers alone collide on the events'
    // unique indexes (23505) or the expectation (23514) only; the 40001s come from that row: an append's trigger
    // (INSERT … ON CONFLICT DO UPDATE on locks) or the consumer's lease or acknowledgement finds it changed since
    // its snapshot. Under YugabyteDB, clients (the store, the workers) meet them the same way.
    const consumerSeen = new Map<string, number>();
    const consumed: number[] = [];
    let writersDone = false;
    const consuming = (async () => {
      const sql = connect();
      for (;;) {
        // Read before leasing: an empty lease taken while the last writers were still committing (its snapshot
        // older than their commits) does not mean the consumer is caught up.
        const caughtUpIfEmpty = writersDone;
        const got = await retrying(
          () =>
            sql.begin(async (tx) => {
              const rows = await tx<{ lease_id: string; decider_id: string; offset: string }[]>`
                SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 1, 5, 30)`;
              const last = rows.at(-1);
              if (last) {
                await tx`SELECT 1 FROM ack_events(${view}, ${last.decider_id}, ${last.lease_id}::uuid, ${last.offset}::bigint)`;
              }
              return rows.map((row) => Number(row.offset));
            }),
          consumerSeen,
        );
        consumed.push(...got);
        if (got.length === 0) {
          if (caughtUpIfEmpty) return;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    })();
    await Promise.all(writing);
    writersDone = true;
    await consuming;

    const total = writers * appendsEach;
    expect(await chainProblems(stream, total)).toEqual([]);
    const offsets = (await db.sql<{ offset: string }[]>`SELECT "offset" FROM get_events(${stream})`).map(
      (row) => Number(row.offset),
    );
    // The consumer got every event once, in the stream's order, and acknowledged the stream to its end.
    expect(consumed).toEqual(offsets);
    const [lock] = await db.sql<{ last_offset: string }[]>`
      SELECT last_offset FROM locks WHERE view = ${view} AND decider_id = ${stream}`;
    expect(Number(lock?.last_offset)).toBe(offsets.at(-1));

    const codes = new Set(
      [...seen.transaction.keys(), ...seen.twoStatements.keys(), ...consumerSeen.keys()].map((key) =>
        key.slice(0, 5),
      ),
    );
    expect(codes.has('23505') || codes.has('40001')).toBe(true);
    console.info(
      `repeatable read, ${writers} writers × ${appendsEach} appends on one stream, a consumer leasing it; retried: ` +
        `one-transaction writers ${JSON.stringify(Object.fromEntries(seen.transaction))}, ` +
        `two-statement writers ${JSON.stringify(Object.fromEntries(seen.twoStatements))}, ` +
        `consumer ${JSON.stringify(Object.fromEntries(consumerSeen))}`,
    );
  });
});

/** Every committed event arrived once, each stream in its order, nothing of the rolled-back transaction. */
function expectEveryEventOnce(run: Interleaving) {
  const byStream = new Map<string, number[]>();
  for (const { stream, offset } of run.delivered)
    byStream.set(stream, [...(byStream.get(stream) ?? []), offset]);
  expect(Object.fromEntries(byStream)).toEqual(Object.fromEntries(run.appended));
  expect(byStream.has(run.rolledBackStream)).toBe(false);
  expect(run.leasedAfterwards).toBe(0);
}

describe('views deliver every event once while commits interleave, under the profile', () => {
  test('the frontier (migrations 0009-0010): a transaction held open holds back what commits after it, then everything arrives once', async () => {
    const view = `frontier-${randomUUID()}`;
    await connect()`SELECT * FROM register_view(${view}, now()::timestamp, 30)`;
    const run = await deliverWhileWritersInterleave({ connect, decider, view, deadlineMs: budget(20_000) });
    // Gap-safe by waiting: while the open transaction runs, the frontier passes none of the transactions that began
    // after it. (Were it to pass them, the open transaction's event would stay behind it for ever.)
    expect(run.deliveredBeforeLateCommit).toEqual([]);
    expectEveryEventOnce(run);
  });

  test('YSQL append-time bookkeeping (docs/yugabytedb-and-aurora.md): nothing reads a transaction id, and a transaction held open holds back its own stream only', async () => {
    const { database: ysql, connect: connectYsql } = await profiledDatabase();
    try {
      for (const statement of readmeBlocks('ysql-bookkeeping', 'sql', 'docs/yugabytedb-and-aurora.md')) {
        await ysql.sql.unsafe(statement);
      }
      const readers = await ysql.sql<{ proname: string }[]>`
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND p.prosrc ~ '(pg_current_snapshot|pg_snapshot_x|pg_current_xact_id|txid_current|backend_xid|log_horizon\\()'`;
      // Nothing left reads a transaction id or a snapshot, or calls what does.
      expect(readers).toEqual([]);
      const [column] = await ysql.sql<{ expression: string }[]>`
        SELECT pg_get_expr(d.adbin, d.adrelid) AS expression
        FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
        WHERE d.adrelid = 'events'::regclass AND a.attname = 'transaction_id'`;
      expect(column?.expression).toBe("'0'::xid8");

      const view = `ysql-${randomUUID()}`;
      await connectYsql()`SELECT * FROM register_view(${view}, now()::timestamp, 30)`;
      const run = await deliverWhileWritersInterleave({
        connect: connectYsql,
        decider,
        view,
        deadlineMs: budget(20_000),
      });
      expectEveryEventOnce(run);
      // The others arrived while it was open, with offsets above its own, and it still arrived afterwards.
      const others = [...run.appended.values()].flat().length - 1;
      expect(run.deliveredBeforeLateCommit).toHaveLength(others);
      expect(Math.min(...run.deliveredBeforeLateCommit)).toBeGreaterThan(run.late.offset);

      // A view registered under READ COMMITTED while writers append (the doc's step 6) reads the whole log once:
      // the events appended before it by its registration, the others by the append trigger.
      const registeredView = `ysql-registered-${randomUUID()}`;
      const { appended, delivered } = await registerWhileWritersAppend({
        connect: connectYsql,
        decider,
        view: registeredView,
        register: (sql) =>
          sql.begin(
            'isolation level read committed',
            (tx) => tx`SELECT * FROM register_view(${registeredView}, '2000-01-01'::timestamp, 30)`,
          ),
        deadlineMs: budget(20_000),
      });
      for (const [stream, offsets] of appended) expect(delivered.get(stream), stream).toEqual(offsets);

      // Why READ COMMITTED: an append in flight while a view registers, to a stream that gets no later event. The
      // registration waits for it at the gate; under REPEATABLE READ it then reads the log as of before that wait,
      // and the stream gets no lock row until its next event.
      const inFlight = async (isolation: string) => {
        const stream = `in-flight-${randomUUID()}`;
        const view = `ysql-${isolation.replaceAll(' ', '-')}-${randomUUID()}`;
        const appender = connectYsql();
        const registrar = connectYsql();
        const pid = await backendPid(registrar);
        let commitAppend: () => void = () => {};
        const appendHeld = new Promise<void>((resolve) => {
          commitAppend = resolve;
        });
        let appended: () => void = () => {};
        const appendDone = new Promise<void>((resolve) => {
          appended = resolve;
        });
        const appending = appender.begin(async (tx) => {
          await tx`SELECT 1 FROM append_event('happened', ${randomUUID()}, ${decider}, ${stream}, '{}', ${randomUUID()}, null)`;
          appended();
          await appendHeld;
        });
        await appendDone;
        const registering = registrar.begin(
          `isolation level ${isolation}`,
          (tx) => tx`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp, 30)`,
        );
        await waitUntilBlocked(ysql.sql, pid);
        commitAppend();
        await appending;
        await registering;
        const [lock] = await ysql.sql<{ offset: string }[]>`
          SELECT "offset" FROM locks WHERE view = ${view} AND decider_id = ${stream}`;
        return lock !== undefined;
      };
      expect(await inFlight('read committed')).toBe(true);
      expect(await inFlight('repeatable read')).toBe(false);
    } finally {
      await ysql.drop();
    }
  });
});

// The single-connection specifications, under the profile: one connection, so one cached block at a time.
const profiled = connect();

/**
 * Under REPEATABLE READ a statement keeps the snapshot it started with, and log_horizon cannot tell a transaction of
 * another database that ended since (other test files run beside this one) from one of this database whose events
 * that snapshot cannot see: the view lags one poll behind it, as a worker would, and the next statement passes it.
 * These specifications are about one connection's results, not that lag: before a statement that reads a view's
 * lock rows, the view is advanced until nothing committed is past its frontier (with nothing else writing here,
 * whatever is left past it is that lag).
 */
function caughtUpFirst(client: SqlClient): SqlClient {
  const readsLocks = /\b(lease_events|stream_events|ack_event|ack_events|advance_view)\(/;
  return {
    async query<T extends Row>(text: string, parameters: unknown[] = []) {
      const view = parameters[0];
      if (readsLocks.test(text) && typeof view === 'string') {
        for (let attempt = 0; attempt < 100; attempt++) {
          const [behind] = await client.query<{ behind: boolean }>(
            `SELECT EXISTS (SELECT 1 FROM events e JOIN view_frontiers f ON f.view = $1
                            WHERE (e.transaction_id, e."offset") > (f.transaction_id, f."offset")) AS behind`,
            [view],
          );
          if (!behind?.behind) break;
          await client.query('SELECT advance_view($1)', [view]);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
      return client.query<T>(text, parameters);
    },
  };
}
describeSqlApi('PostgreSQL via postgres.js, YugabyteDB profile', async () =>
  caughtUpFirst(postgresJsClient(profiled)),
);
describeProjectionSql(
  'PostgreSQL via postgres.js, YugabyteDB profile',
  async () => caughtUpFirst(postgresJsClient(profiled)),
  {},
);
