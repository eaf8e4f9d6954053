/**
 * log_horizon(): below it every transaction of this database has ended, so views' frontiers may pass it. It must
 * never be above a transaction of this database that is still running, and transactions of other databases on the
 * cluster must not hold it back. Checked against real concurrent sessions.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
const other = await createTestDatabase();
afterAll(() => Promise.all([db.drop(), other.drop()]));

/** The horizon, then the xmax of a snapshot taken after it (which the horizon can never pass). */
const horizon = async () => {
  const [row] = await db.sql<{ horizon: string }[]>`SELECT log_horizon()::text AS horizon`;
  const [after] = await db.sql<
    { xmax: string }[]
  >`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`;
  return { horizon: BigInt(row?.horizon ?? '-1'), xmax: BigInt(after?.xmax ?? '-1') };
};

/** Runs `inside` while a transaction on `database` holds a transaction id (`xid`), then rolls it back. */
async function whileHolding<T>(database: typeof db, inside: (xid: bigint) => Promise<T>): Promise<T> {
  const session = database.connect({ max: 1 });
  let result: T | undefined;
  try {
    await session
      .begin(async (tx) => {
        const [row] = await tx<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
        result = await inside(BigInt(row?.xid ?? '-1'));
        throw new Error('roll back');
      })
      .catch((error: unknown) => {
        if (!(error instanceof Error) || error.message !== 'roll back') throw error;
      });
  } finally {
    await session.end();
  }
  return result as T;
}

test('with nothing running, it is the snapshot’s xmax, never above it', async () => {
  for (let i = 0; i < 20; i++) {
    const { horizon: h, xmax } = await horizon();
    expect(h <= xmax).toBe(true);
    expect(h > 0n).toBe(true);
  }
});

test('a running transaction of this database holds it at or below its id', async () => {
  await whileHolding(db, async (xid) => {
    // Other transactions complete meanwhile: xmax moves past the open one, the horizon does not.
    for (let i = 0; i < 5; i++) await db.sql`SELECT pg_current_xact_id()`;
    const { horizon: h, xmax } = await horizon();
    expect(xmax > xid).toBe(true);
    expect(h <= xid).toBe(true);
  });
  const { horizon: h } = await horizon();
  expect(h > 0n).toBe(true);
});

test('a running transaction of another database does not hold it back', async () => {
  await whileHolding(other, async (xid) => {
    for (let i = 0; i < 5; i++) await db.sql`SELECT pg_current_xact_id()`;
    const { horizon: h } = await horizon();
    expect(h > xid).toBe(true);
  });
});

test('transactions that start after the snapshot never lift it above the snapshot', async () => {
  // Writers take new transaction ids all the time while the horizon is read: it stays at or below xmax.
  const writers = db.connect({ max: 4 });
  let stop = false;
  const writing = Array.from({ length: 4 }, async () => {
    while (!stop) await writers`SELECT pg_current_xact_id()`;
  });
  try {
    for (let i = 0; i < 200; i++) {
      const { horizon: h, xmax } = await horizon();
      expect(h <= xmax).toBe(true);
      expect(xmax - h < 1000n).toBe(true);
    }
  } finally {
    stop = true;
    await Promise.all(writing);
    await writers.end();
  }
});

test('under REPEATABLE READ, a running transaction of another database does not hold it back either', async () => {
  await whileHolding(other, async (xid) => {
    for (let i = 0; i < 5; i++) await db.sql`SELECT pg_current_xact_id()`;
    // A transaction the snapshot saw running that has ended since may have been of this database, as far as the
    // horizon can tell: it holds the horizon back, rightly. Other test files on this cluster end such transactions
    // all the time, so the check waits for a snapshot in which none is older than the held one.
    const deadline = Date.now() + 40_000;
    for (;;) {
      const [row] = await db.sql.begin('ISOLATION LEVEL REPEATABLE READ', async (tx) => {
        // The snapshot sees the other database's transaction running: only its database tells it apart.
        const [snapshot] = await tx<{ running: boolean; older: number }[]>`
          SELECT ${xid.toString()}::xid8 = ANY (SELECT pg_snapshot_xip(pg_current_snapshot())) AS running,
                 (SELECT count(*)::int
                  FROM pg_snapshot_xip(pg_current_snapshot()) x
                  WHERE x < ${xid.toString()}::xid8) AS older`;
        expect(snapshot?.running).toBe(true);
        const [horizon] = await tx<{ horizon: string }[]>`SELECT log_horizon()::text AS horizon`;
        return [{ horizon: BigInt(horizon?.horizon ?? '-1'), older: snapshot?.older ?? -1 }];
      });
      if (row?.older === 0) {
        expect(row.horizon > xid).toBe(true);
        return;
      }
      expect(Date.now(), 'a snapshot with no transaction older than the held one').toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
});
