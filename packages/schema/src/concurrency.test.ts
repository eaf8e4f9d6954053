/**
 * What the SQL API guarantees when several connections act at once. Each race is staged with two real
 * connections: the first holds its transaction open until the second is seen waiting on a lock.
 */
import { randomUUID } from 'node:crypto';
import { backendPid, createTestDatabase, waitUntilBlocked } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

const decider = 'race';
await db.sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;

function append(sql: postgres.Sql | postgres.TransactionSql, deciderId: string, previousId: string | null) {
  return sql<{ event_id: string; offset: string }[]>`
    SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${deciderId}, '{}', ${randomUUID()}, ${previousId})`;
}

/** Outcome of a promise that is expected to settle later, without an unhandled rejection meanwhile. */
function settle<T>(promise: Promise<T>) {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: postgres.PostgresError) => ({ ok: false as const, error }),
  );
}

async function streamOf(deciderId: string) {
  return db.sql<{ event_id: string; previous_id: string | null }[]>`SELECT * FROM get_events(${deciderId})`;
}

describe('optimistic locking between two connections', () => {
  test('two first events of one new stream: exactly one commits, the other gets a unique violation', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const first = db.connect({ max: 1 });
    const second = db.connect({ max: 1 });
    const secondPid = await backendPid(second);
    let late: ReturnType<typeof settle> | undefined;
    await first.begin(async (tx) => {
      await append(tx, deciderId, null);
      late = settle(second.begin((tx2) => append(tx2, deciderId, null)));
      await waitUntilBlocked(db.sql, secondPid);
    });
    const outcome = await late;
    expect(outcome?.ok).toBe(false);
    expect(outcome?.ok === false && outcome.error).toMatchObject({
      code: '23505',
      constraint_name: 'events_first_event_key',
    });
    expect(await streamOf(deciderId)).toHaveLength(1);
  });

  test('two appends after the same event: exactly one commits, the other gets a unique violation', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const [head] = await append(db.sql, deciderId, null);
    const first = db.connect({ max: 1 });
    const second = db.connect({ max: 1 });
    const secondPid = await backendPid(second);
    let late: ReturnType<typeof settle> | undefined;
    await first.begin(async (tx) => {
      await append(tx, deciderId, head?.event_id ?? null);
      late = settle(second.begin((tx2) => append(tx2, deciderId, head?.event_id ?? null)));
      await waitUntilBlocked(db.sql, secondPid);
    });
    const outcome = await late;
    expect(outcome?.ok === false && outcome.error).toMatchObject({
      code: '23505',
      constraint_name: 'events_previous_id_key',
    });
    expect(await streamOf(deciderId)).toHaveLength(2);
  });

  test('eight writers racing on one stream never fork its chain', async () => {
    const deciderId = `stream-${randomUUID()}`;
    const writers = Array.from({ length: 8 }, () => db.connect({ max: 1 }));
    let appended = 0;
    const conflicts: string[] = [];
    await Promise.all(
      writers.map(async (sql) => {
        for (let attempt = 0; attempt < 15; attempt++) {
          const [last] = await sql<
            { event_id: string }[]
          >`SELECT * FROM get_last_event(${deciderId}, ${decider})`;
          try {
            await append(sql, deciderId, last?.event_id ?? null);
            appended++;
          } catch (error) {
            const e = error as postgres.PostgresError;
            conflicts.push(`${e.code}:${e.constraint_name}`);
          }
        }
      }),
    );
    const events = await streamOf(deciderId);
    expect(events).toHaveLength(appended);
    expect(appended).toBeGreaterThan(0);
    expect(events[0]?.previous_id).toBeNull();
    for (let i = 1; i < events.length; i++) expect(events[i]?.previous_id).toBe(events[i - 1]?.event_id);
    // Every failure is one of the optimistic lock's own signals, nothing else.
    const signals = new Set([
      '23505:events_previous_id_key',
      '23505:events_first_event_key',
      '23514:events_previous_id_required',
    ]);
    for (const conflict of conflicts) expect(signals).toContain(conflict);
    expect(appended + conflicts.length).toBe(8 * 15);
  });
});

describe('concurrent consumers', () => {
  async function viewOver(streams: number, eventsEach: number) {
    const view = `view-${randomUUID()}`;
    await db.sql`SELECT * FROM register_view(${view})`;
    const ids: string[] = [];
    for (let s = 0; s < streams; s++) {
      const deciderId = `stream-${randomUUID()}`;
      let previous: string | null = null;
      for (let e = 0; e < eventsEach; e++) {
        const [row] = await append(db.sql, deciderId, previous);
        previous = row?.event_id ?? null;
      }
      ids.push(deciderId);
    }
    return { view, ids };
  }

  /** The view's lock rows, by stream. */
  const lockRows = async (view: string) =>
    (await db.sql<{ decider_id: string }[]>`SELECT decider_id FROM locks WHERE view = ${view}`).map(
      (row) => row.decider_id,
    );

  test('a stream leased in an open transaction is skipped, not waited for', async () => {
    const { view, ids } = await viewOver(2, 1);
    // Appends write no lock row: they appear, committed, when the view advances.
    expect(await lockRows(view)).toEqual([]);
    await db.sql`SELECT advance_view(${view})`;
    expect((await lockRows(view)).sort()).toEqual([...ids].sort());
    const holder = db.connect({ max: 1 });
    const other = db.connect({ max: 1 });
    await holder.begin(async (tx) => {
      const [held] = await tx<{ decider_id: string }[]>`SELECT * FROM stream_events(${view}, 1)`;
      const got = await other<{ decider_id: string }[]>`SELECT * FROM stream_events(${view}, 10)`;
      expect(got).toHaveLength(1);
      expect(got[0]?.decider_id).not.toBe(held?.decider_id);
    });
    await Promise.all([holder.end(), other.end()]);
  });

  test('a consumer advancing the view in an open transaction is not waited for: the others lease the lock rows already committed, and the new ones once it commits', async () => {
    const { view, ids } = await viewOver(1, 1);
    await db.sql`SELECT advance_view(${view})`;
    const fresh = `stream-${randomUUID()}`;
    await append(db.sql, fresh, null);
    const holder = db.connect({ max: 1 });
    const other = db.connect({ max: 1 });
    await holder.begin(async (tx) => {
      // The holder's lease advances the view (the fresh stream's lock row, not committed yet) and takes the older
      // stream, whose lock row has waited longest.
      const [held] = await tx<{ decider_id: string }[]>`SELECT * FROM stream_events(${view}, 1)`;
      expect(held?.decider_id).toBe(ids[0]);
      // The other consumer neither waits for the frontier nor for the holder's rows: it gets nothing yet.
      expect(await other`SELECT advance_view(${view}) AS passed`).toEqual([{ passed: 0 }]);
      expect(await other`SELECT * FROM stream_events(${view}, 10)`).toEqual([]);
    });
    const got = await other<{ decider_id: string }[]>`SELECT * FROM stream_events(${view}, 10)`;
    expect(got.map((row) => row.decider_id)).toEqual([fresh]);
    await Promise.all([holder.end(), other.end()]);
  });

  test('four consumers handle every event exactly once, each stream in order', async () => {
    const streams = 30;
    const eventsEach = 4;
    const { view, ids } = await viewOver(streams, eventsEach);
    const handled: { deciderId: string; offset: number }[] = [];
    const consumers = Array.from({ length: 4 }, () => db.connect({ max: 1 }));
    const deadline = Date.now() + 30_000;
    await Promise.all(
      consumers.map(async (sql) => {
        while (handled.length < streams * eventsEach && Date.now() < deadline) {
          const leased = await sql<
            { decider_id: string; offset: string }[]
          >`SELECT * FROM stream_events(${view}, 3)`;
          for (const event of leased) {
            handled.push({ deciderId: event.decider_id, offset: Number(event.offset) });
            await sql`SELECT * FROM ack_event(${view}, ${event.decider_id}, ${event.offset})`;
          }
          if (leased.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }),
    );
    expect(handled).toHaveLength(streams * eventsEach);
    const offsets = handled.map((h) => h.offset);
    expect(new Set(offsets).size).toBe(offsets.length);
    for (const deciderId of ids) {
      const order = handled.filter((h) => h.deciderId === deciderId).map((h) => h.offset);
      expect(order).toHaveLength(eventsEach);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
    const [pending] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM locks WHERE view = ${view} AND last_offset < "offset"`;
    expect(pending?.n).toBe(0);
  });
});

describe("a subject's first key", () => {
  test('two writers drawing the first key of one subject at once both get the one stored', async () => {
    const subject = `subject-${randomUUID()}`;
    const draw = (sql: postgres.Sql | postgres.TransactionSql, byte: string) =>
      sql<{ key_id: string; key: Buffer }[]>`
        SELECT * FROM subject_key(${subject}, ${randomUUID()}, ${`\\x${byte.repeat(32)}`}::text::bytea)`;
    const first = db.connect({ max: 1 });
    const second = db.connect({ max: 1 });
    const secondPid = await backendPid(second);
    let late: Promise<{ ok: boolean; value?: { key_id: string }[] }> | undefined;
    let mine: { key_id: string }[] = [];
    await first.begin(async (tx) => {
      mine = await draw(tx, 'aa');
      late = settle(second.begin((tx2) => draw(tx2, 'bb')));
      await waitUntilBlocked(db.sql, secondPid);
    });
    const outcome = await late;
    expect(outcome?.ok).toBe(true);
    expect(outcome?.value?.[0]?.key_id).toBe(mine[0]?.key_id);
    expect(await db.sql`SELECT count(*)::int AS n FROM subject_keys WHERE subject = ${subject}`).toEqual([
      { n: 1 },
    ]);
  });
});
