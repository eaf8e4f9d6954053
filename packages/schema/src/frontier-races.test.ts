/**
 * The frontier's horizon (log_horizon) against transactions that start or end while it is computed. Each race is
 * staged deterministically with real connections: a REPEATABLE READ transaction fixes the snapshot that
 * log_horizon reads, and other connections then take a transaction id, or commit, before it is called.
 *
 * Both races below broke the first log_horizon, and are fixed in 0010 as it ships:
 *   - a transaction that took its id after the snapshot has an id at or above xmax, which the modular arithmetic
 *     counted as 2^32 - 1 behind: the horizon wrapped to about 2^64, so a view registered then never read an event
 *     again and advance_view passed over every transaction still running (seen in 3 runs out of 7 under READ
 *     COMMITTED). Ids at or past xmax are now left out: such a transaction can only append at or past xmax;
 *   - under REPEATABLE READ, a transaction running in the snapshot that commits before pg_stat_get_activity is read
 *     counted as ended, though its events stay invisible to the snapshot advance_view reads the log with. Outside
 *     READ COMMITTED the horizon is now at most the snapshot's xmin.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

const decider = 'horizon';
await db.sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;

function append(sql: postgres.Sql | postgres.ReservedSql, deciderId: string) {
  return sql<{ offset: string; transaction_id: string }[]>`
    SELECT "offset", transaction_id::text FROM append_event('happened', ${randomUUID()}, ${decider}, ${deciderId},
      '{}', ${randomUUID()}, NULL)`;
}

/** Runs `body` with reserved connections, rolling back and releasing them after. */
async function withConnections<T>(
  count: number,
  body: (...connections: postgres.ReservedSql[]) => Promise<T>,
) {
  const connections = await Promise.all(Array.from({ length: count }, () => db.sql.reserve()));
  try {
    return await body(...connections);
  } finally {
    for (const connection of connections) {
      await connection`ROLLBACK`.catch(() => {});
      connection.release();
    }
  }
}

/** Advances the view (READ COMMITTED) until `stream` has a lock row, for a few seconds at most. */
async function lockRowOf(view: string, stream: string): Promise<number | undefined> {
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; ) {
    await db.sql`SELECT advance_view(${view})`;
    const [row] = await db.sql<{ offset: string }[]>`
      SELECT "offset" FROM locks WHERE view = ${view} AND decider_id = ${stream}`;
    if (row) return Number(row.offset);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

test('the horizon never passes the snapshot, even when a transaction takes its id while it is computed', async () => {
  await withConnections(2, async (reader, other) => {
    await reader`BEGIN ISOLATION LEVEL REPEATABLE READ`;
    const [snapshot] = await reader<
      { xmax: string }[]
    >`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`;
    // Transactions of this database take ids after the snapshot: one commits (its id is xmax), one stays open
    // with the next id, above xmax.
    await db.sql`SELECT pg_current_xact_id()`;
    await other`BEGIN`;
    const [taken] = await other<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
    expect(BigInt(taken?.xid ?? '0')).toBeGreaterThan(BigInt(snapshot?.xmax ?? '0'));
    const [horizon] = await reader<{ horizon: string }[]>`SELECT log_horizon()::text AS horizon`;
    expect(BigInt(horizon?.horizon ?? '0')).toBeLessThanOrEqual(BigInt(snapshot?.xmax ?? '0'));
  });
});

test('a view registered while a transaction takes its id reads the events appended after', async () => {
  const view = `view-${randomUUID()}`;
  const stream = `after-${randomUUID()}`;
  await withConnections(2, async (registrar, other) => {
    await registrar`BEGIN ISOLATION LEVEL REPEATABLE READ`;
    await registrar`SELECT 1`;
    await other`BEGIN`;
    await other`SELECT pg_current_xact_id()`;
    await registrar`SELECT * FROM register_view(${view})`;
    await registrar`COMMIT`;
    await other`COMMIT`;
  });
  const [appended] = await append(db.sql, stream);
  // Seen without the fix: the frontier is 18446744069414585088-ish, and the stream never gets a lock row.
  expect(await lockRowOf(view, stream)).toBe(Number(appended?.offset));
});

test('an event that commits while a repeatable-read consumer advances the view is not passed over', async () => {
  const view = `view-${randomUUID()}`;
  const early = `early-${randomUUID()}`;
  const late = `late-${randomUUID()}`;
  await db.sql`SELECT * FROM register_view(${view})`;
  const offsets = await withConnections(2, async (holder, consumer) => {
    // 1. holder appends to `early` and stays open (transaction id h).
    await holder`BEGIN`;
    const [mine] = await append(holder, early);
    // 2. another transaction (id w > h) appends to `late` and commits.
    const [other] = await append(db.sql, late);
    // 3. a consumer in REPEATABLE READ takes its snapshot: h running, w committed.
    await consumer`BEGIN ISOLATION LEVEL REPEATABLE READ`;
    await consumer`SELECT 1`;
    // 4. holder commits before the consumer advances.
    await holder`COMMIT`;
    // 5. the consumer advances: the horizon is past h (no longer running), but its snapshot cannot see h's event.
    await consumer`SELECT advance_view(${view})`;
    await consumer`COMMIT`;
    return { early: Number(mine?.offset), late: Number(other?.offset) };
  });
  expect(await lockRowOf(view, late)).toBe(offsets.late);
  // Seen without the fix: the frontier is at w, above h, and `early` never gets a lock row: its event is lost.
  expect(await lockRowOf(view, early)).toBe(offsets.early);
});
