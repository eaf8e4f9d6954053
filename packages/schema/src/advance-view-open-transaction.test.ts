/**
 * advance_view never passes over an event whose transaction is still open: the frontier stays below it, and its
 * stream gets no lock row until it commits. Two real connections: one holds its transaction open (having taken
 * its transaction id before or after the other commits), the other appends and commits.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

const decider = 'frontier';
await db.sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;

function append(sql: postgres.Sql | postgres.ReservedSql, deciderId: string) {
  return sql<{ offset: string; transaction_id: string }[]>`
    SELECT "offset", transaction_id::text FROM append_event('happened', ${randomUUID()}, ${decider}, ${deciderId},
      '{}', ${randomUUID()}, NULL)`;
}

async function lockRows(view: string) {
  const rows = await db.sql<{ decider_id: string; offset: string }[]>`
    SELECT decider_id, "offset" FROM locks WHERE view = ${view} ORDER BY decider_id`;
  return Object.fromEntries(rows.map((row) => [row.decider_id, Number(row.offset)]));
}

async function frontierXid(view: string): Promise<bigint> {
  const [row] = await db.sql<{ transaction_id: string }[]>`
    SELECT transaction_id::text FROM view_frontiers WHERE view = ${view}`;
  return BigInt(row?.transaction_id ?? '-1');
}

test.each([
  {
    when: 'before',
    what: 'took its transaction id before the other committed (xid order is not commit order)',
  },
  { when: 'after', what: 'took its transaction id when it appended, after the other committed' },
])('an open transaction that $what is not passed over; once committed, it is read', async ({ when }) => {
  const view = `view-${randomUUID()}`;
  const open = `open-${randomUUID()}`;
  const committed = `committed-${randomUUID()}`;
  await db.sql`SELECT * FROM register_view(${view})`;

  const holder = await db.sql.reserve();
  try {
    await holder`BEGIN`;
    let openXid: bigint | undefined;
    if (when === 'before') {
      const [row] = await holder<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
      openXid = BigInt(row?.xid ?? '0');
    }
    const [other] = await append(db.sql, committed);
    const [mine] = await append(holder, open);
    openXid ??= BigInt(mine?.transaction_id ?? '0');
    expect(BigInt(mine?.transaction_id ?? '0')).toBe(openXid);
    if (when === 'before') expect(BigInt(other?.transaction_id ?? '0')).toBeGreaterThan(openXid);
    else expect(BigInt(other?.transaction_id ?? '0')).toBeLessThan(openXid);

    // However often consumers advance, the open transaction's stream gets no lock row and the frontier stays
    // below it. (When it took its id first, the later commit waits behind it too: its id is above the horizon.)
    for (let call = 0; call < 3; call++) await db.sql`SELECT advance_view(${view})`;
    expect(await lockRows(view)).not.toHaveProperty(open);
    expect(await frontierXid(view)).toBeLessThan(openXid);
    if (when === 'before') expect(await lockRows(view)).not.toHaveProperty(committed);

    await holder`COMMIT`;
    // Other test files share this server, and their open transactions hold the horizon back too (transaction ids
    // are cluster-wide): advance until both streams are read, for a few seconds at most.
    const deadline = Date.now() + 10_000;
    while (!(open in (await lockRows(view))) && Date.now() < deadline) {
      await db.sql`SELECT advance_view(${view})`;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await lockRows(view)).toEqual({
      [open]: Number(mine?.offset),
      [committed]: Number(other?.offset),
    });
    expect(await frontierXid(view)).toBeGreaterThanOrEqual(openXid);
  } finally {
    await holder`ROLLBACK`.catch(() => {});
    holder.release();
  }
});
