/**
 * The names deprecated in 0.2 (removed in 0.3) still work: `ack`, `nack` and `scheduleNack` are the functions now
 * called `ackEvent`, `nackEvent` and `scheduleNackEvent`, and the old option names (`lockTimeoutS`,
 * `pollingDelayMs`, `lockSeconds`) set what `leaseSeconds` and `pollIntervalMs` set.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import * as stream from './index.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 2 }));
const tasks = defineEvents('Task', { TaskAdded: event<{ title: string }>() });
const store = createEventStore(db, tasks);
beforeAll(() => store.register());

async function newStream() {
  const deciderId = `task-${randomUUID()}`;
  const [first, second] = await store.append(
    deciderId,
    [
      { type: 'TaskAdded', data: { title: 'a' } },
      { type: 'TaskAdded', data: { title: 'b' } },
    ],
    { expectedLastEventId: null },
  );
  return { deciderId, first: first?.offset as number, second: second?.offset as number };
}

/** The offset stream_events delivers for this stream now (undefined: none, it is leased or read). */
async function delivered(view: string, deciderId: string) {
  const rows = await stream.streamEvents(db, view, 1000);
  return rows.find((row) => row.deciderId === deciderId)?.offset;
}

/** How many seconds the stream's lease has left. */
async function leaseLeft(view: string, deciderId: string) {
  const [row] = await database.sql<{ s: number }[]>`
    SELECT extract(epoch FROM locked_until - now())::float8 AS s FROM locks
    WHERE view = ${view} AND decider_id = ${deciderId}`;
  return row?.s ?? Number.NaN;
}

test('ack, nack and scheduleNack are ackEvent, nackEvent and scheduleNackEvent', () => {
  expect(stream.ack).toBe(stream.ackEvent);
  expect(stream.nack).toBe(stream.nackEvent);
  expect(stream.scheduleNack).toBe(stream.scheduleNackEvent);
});

test("ack, nack and scheduleNack still run fstore-sql's cycle", async () => {
  const { deciderId, first, second } = await newStream();
  const view = `view-${randomUUID()}`;
  await stream.registerView(db, view, { startAt: new Date(0) });

  expect(await delivered(view, deciderId)).toBe(first);
  const [acked] = await stream.ack(db, view, deciderId, first);
  expect(acked).toMatchObject({ deciderId, lastOffset: first });

  expect(await delivered(view, deciderId)).toBe(second);
  await stream.nack(db, view, deciderId);
  expect(await delivered(view, deciderId)).toBe(second);

  const [scheduled] = await stream.scheduleNack(db, view, deciderId, 60_000);
  expect(scheduled?.deciderId).toBe(deciderId);
  expect(await leaseLeft(view, deciderId)).toBeGreaterThan(30);
  expect(await delivered(view, deciderId)).toBeUndefined();
});

test("registerView's lockTimeoutS and pollingDelayMs set what leaseSeconds and pollIntervalMs set", async () => {
  const registered = async (options: stream.RegisterViewOptions) => {
    const view = await stream.registerView(db, `view-${randomUUID()}`, options);
    return { lockTimeoutS: view.lockTimeoutS, poolingDelayMs: view.poolingDelayMs };
  };
  expect(await registered({ lockTimeoutS: 45 })).toEqual(await registered({ leaseSeconds: 45 }));
  expect(await registered({ lockTimeoutS: 45 })).toMatchObject({ lockTimeoutS: 45 });
  expect(await registered({ pollingDelayMs: 250 })).toEqual(await registered({ pollIntervalMs: 250 }));
  expect(await registered({ lockTimeoutS: 45, pollingDelayMs: 250 })).toEqual({
    lockTimeoutS: 45,
    poolingDelayMs: 250,
  });
  expect(await registered({ leaseSeconds: 45, pollIntervalMs: 250 })).toEqual({
    lockTimeoutS: 45,
    poolingDelayMs: 250,
  });
});

test("leaseEvents' lockSeconds is leaseSeconds", async () => {
  const { deciderId, first, second } = await newStream();
  const view = `view-${randomUUID()}`;
  await stream.registerView(db, view, { startAt: new Date(0) });
  const leased = await stream.leaseEvents(db, view, { streams: 1000, eventsPerStream: 10, lockSeconds: 120 });
  expect(leased.filter((row) => row.deciderId === deciderId).map((row) => row.offset)).toEqual([
    first,
    second,
  ]);
  expect(await leaseLeft(view, deciderId)).toBeGreaterThan(100);
  expect(await leaseLeft(view, deciderId)).toBeLessThanOrEqual(120);
});
