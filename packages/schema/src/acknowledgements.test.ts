/**
 * Acknowledgements that must not move a stream's position: of an offset that does not exist or belongs to another
 * stream, from a worker whose lease expired and was taken over, of an offset below the position, or past what the
 * lease delivered. Each is refused (nothing written, the connection still usable, as in the bad-input catalogue)
 * or leaves the position where it was; where a late acknowledgement does change something, the test says what.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { appendOne, registerDecider } from './test-support/decider-fixture.js';
import { INVALID, LEASE_LOST, refusalChecks } from './test-support/refusals.js';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
/** One connection for every acknowledgement: every refusal must leave it usable. */
const conn = db.connect({ max: 1 });
const { expectRefused } = refusalChecks(db.sql, conn);

/** An offset of another stream than the ones the tests acknowledge. */
let otherOffset = '';

beforeAll(async () => {
  await registerDecider(conn);
  otherOffset = (await appendOne(conn, `other-${randomUUID()}`, null)).offset;
});

describe('acknowledgements that must not move a stream', () => {
  /** A view of its own, with one stream of `count` events. */
  async function setUp(count: number) {
    const view = `view-${randomUUID()}`;
    await conn`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
    const deciderId = `stream-${randomUUID()}`;
    const offsets: string[] = [];
    let previous: string | null = null;
    for (let i = 0; i < count; i++) {
      const row = await appendOne(conn, deciderId, previous);
      offsets.push(row.offset);
      previous = row.event_id;
    }
    const lease = async (seconds = 300, perStream = 100) => {
      const rows = await conn<{ lease_id: string; offset: string }[]>`
        SELECT * FROM lease_events(${view}, 1000, ${perStream}, ${seconds}) WHERE decider_id = ${deciderId}`;
      return { token: rows[0]?.lease_id as string, offsets: rows.map((r) => r.offset) };
    };
    const lock = async () => {
      const [row] = await db.sql`
        SELECT last_offset, lease_id, locked_until, locked_until <= now() AS free FROM locks
        WHERE view = ${view} AND decider_id = ${deciderId}`;
      return row as { last_offset: string; lease_id: string | null; locked_until: Date; free: boolean };
    };
    return { view, deciderId, offsets, lease, lock };
  }

  const expire = (view: string, deciderId: string) =>
    db.sql`UPDATE locks SET locked_until = now() - interval '1 second' WHERE view = ${view} AND decider_id = ${deciderId}`;

  test('ack_events of an offset that does not exist, or belongs to another stream: 22023, the lease and position stay', async () => {
    const { view, deciderId, lease, lock } = await setUp(2);
    const { token } = await lease();
    const before = await lock();
    for (const offset of ['999999999', otherOffset, '0', '-1']) {
      await expectRefused(
        `SELECT * FROM ack_events($1, $2, $3::text::uuid, $4::text::bigint)`,
        [view, deciderId, token, offset],
        INVALID,
      );
    }
    expect(await lock()).toEqual(before);
  });

  test('ack_event (fstore-sql) of an offset that does not exist, or belongs to another stream: 22023, nothing moves', async () => {
    const { view, deciderId, lease, lock } = await setUp(2);
    await lease();
    const before = await lock();
    for (const offset of ['999999999', otherOffset]) {
      await expectRefused(
        `SELECT * FROM ack_event($1, $2, $3::text::bigint)`,
        [view, deciderId, offset],
        INVALID,
      );
    }
    expect(await lock()).toEqual(before);
  });

  test('a late ack_events from a worker whose lease expired and was taken over: 55P03; the new holder keeps its lease and acknowledges', async () => {
    const { view, deciderId, offsets, lease, lock } = await setUp(3);
    const first = await lease(300, 2);
    await expire(view, deciderId);
    const second = await lease(300, 3);
    expect(second.token).not.toBe(first.token);
    expect(second.offsets).toEqual(offsets);
    const held = await lock();
    await expectRefused(
      `SELECT * FROM ack_events($1, $2, $3::text::uuid, $4::text::bigint)`,
      [view, deciderId, first.token, offsets[1] as string],
      LEASE_LOST,
    );
    expect(await lock()).toEqual(held);
    await conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${second.token}, ${offsets[2] as string})`;
    expect((await lock()).last_offset).toBe(offsets[2]);
    // Even after the new holder moved on, the late worker's token stays refused.
    await expectRefused(
      `SELECT * FROM ack_events($1, $2, $3::text::uuid, $4::text::bigint)`,
      [view, deciderId, first.token, offsets[0] as string],
      LEASE_LOST,
    );
    expect((await lock()).last_offset).toBe(offsets[2]);
  });

  test('an acknowledgement of an offset below the position does not move the stream backwards', async () => {
    const { view, deciderId, offsets, lease, lock } = await setUp(3);
    const { token } = await lease();
    await conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${token}, ${offsets[2] as string}, false)`;
    await conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${token}, ${offsets[0] as string})`;
    expect((await lock()).last_offset).toBe(offsets[2]);
    await conn`SELECT * FROM ack_event(${view}, ${deciderId}, ${offsets[0] as string})`;
    expect((await lock()).last_offset).toBe(offsets[2]);
  });

  test("a late ack_event (fstore-sql, no token) never moves the position backwards, but it ends the new holder's lease: the stream can be leased twice at once", async () => {
    const { view, deciderId, offsets, lease, lock } = await setUp(3);
    // Worker A takes the first event, and its lease expires; worker B takes the stream over and acknowledges two.
    const [a] = await conn<
      { offset: string }[]
    >`SELECT * FROM stream_events(${view}, 1000, 300) WHERE decider_id = ${deciderId}`;
    expect(a?.offset).toBe(offsets[0]);
    await expire(view, deciderId);
    const b = await lease(300, 2);
    await conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${b.token}, ${offsets[1] as string}, false)`;
    expect((await lock()).free).toBe(false);
    // A's late acknowledgement of its event: the position stays at B's...
    await conn`SELECT * FROM ack_event(${view}, ${deciderId}, ${a?.offset as string})`;
    const after = await lock();
    expect(after.last_offset).toBe(offsets[1]);
    // ...but the stream is free again while B still holds a lease on it: a third worker gets the next event.
    expect(after.free).toBe(true);
    const c = await lease(300, 1);
    expect(c.offsets).toEqual([offsets[2]]);
    expect(c.token).not.toBe(b.token);
  });

  test('ack_events, ack_leases and fail_event refuse an offset of the stream past what the lease delivered: nothing is skipped undelivered', async () => {
    const { deciderId, view, offsets, lease, lock } = await setUp(3);
    const { token, offsets: delivered } = await lease(300, 1);
    expect(delivered).toEqual([offsets[0]]);
    const before = await lock();
    const past = offsets[2] as string;
    expect(
      await failureOf(() => conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${token}, ${past})`),
    ).toMatchObject({ code: '22023', constraint: 'locks_within_lease' });
    expect(
      await failureOf(
        () => conn`SELECT * FROM fail_event(${view}, ${deciderId}, ${token}, ${past}, 'boom', 0, 1, false)`,
      ),
    ).toMatchObject({ code: '22023', constraint: 'locks_within_lease' });
    const acks = JSON.stringify([{ decider_id: deciderId, lease_id: token, offset: Number(past) }]);
    expect(await failureOf(() => conn`SELECT ack_leases(${view}, ${acks}::text::jsonb)`)).toMatchObject({
      code: '55P03',
      constraint: 'locks_lease_held',
    });
    expect(await lock()).toEqual(before);
    // The last delivered event is what the holder acknowledges; the next lease delivers the rest.
    await conn`SELECT * FROM ack_events(${view}, ${deciderId}, ${token}, ${offsets[0] as string})`;
    expect((await lease()).offsets).toEqual([offsets[1], offsets[2]]);
  });
});
