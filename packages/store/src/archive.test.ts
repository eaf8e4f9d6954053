/**
 * Archiving and retention through @fstore/store: archiveStream and archiveClosedStreams move closed streams out of
 * the log, a store still loads them and says so (loadStream), a command on one fails as on any closed stream, and
 * removeArchivedStreams deletes them for good in batches. Refusals are typed and move nothing. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { archiveClosedStreams, archiveStream, getArchivedStream, removeArchivedStreams } from './archive.js';
import { createCommandHandler, type Decider } from './command-handler.js';
import { StreamClosedError, StreamNotClosedError, StreamNotHandledError, ValidationError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));

const orderEvents = defineEvents('ArchivedOrder', {
  Placed: event<{ total: number }>(),
  Shipped: event<{ carrier: string }>({ final: true }),
});
type State = { status: 'new' | 'placed' | 'shipped' };
const orders: Decider<{ ship: boolean } | { place: number }, State, EventOf<typeof orderEvents>> = {
  initialState: { status: 'new' },
  decide: (command) =>
    'place' in command
      ? [{ type: 'Placed', data: { total: command.place } }]
      : [{ type: 'Shipped', data: { carrier: 'post' } }],
  evolve: (_, e) => ({ status: e.type === 'Placed' ? 'placed' : 'shipped' }),
};
const store = createEventStore(db, orderEvents);
const handle = createCommandHandler(store, orders);
beforeAll(() => store.register());

/** A shipped (closed) order of its own. */
async function shippedOrder() {
  const id = `order-${randomUUID()}`;
  await handle(id, { place: 10 });
  await handle(id, { ship: true });
  return id;
}

const hotCount = async (id: string) =>
  (await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events WHERE decider_id = ${id}`)[0]?.n;

describe('archiveStream', () => {
  test('a store loads an archived stream as before, and loadStream says it was archived', async () => {
    const id = await shippedOrder();
    const before = await store.load(id);
    expect(await store.loadStream(id)).toEqual({ events: before });

    const archived = await archiveStream(db, 'ArchivedOrder', id);
    expect(archived).toMatchObject({ decider: 'ArchivedOrder', deciderId: id, events: 2, removedAt: null });
    expect(archived.closedAt).toEqual(before[1]?.createdAt);
    expect(await hotCount(id)).toBe(0);
    expect(await store.load(id)).toEqual(before);
    expect(await store.loadLast(id)).toEqual(before[1]);
    expect(await store.load(id, { afterEventId: before[0]?.eventId as string })).toEqual([before[1]]);
    expect(await store.loadStream(id)).toEqual({ events: before, archived });
    expect(await getArchivedStream(db, id, 'ArchivedOrder')).toEqual(archived);
  });

  test('a command on an archived stream fails as on any closed stream, and appends nothing', async () => {
    const id = await shippedOrder();
    await archiveStream(db, 'ArchivedOrder', id);
    await expect(handle(id, { place: 5 })).rejects.toBeInstanceOf(StreamClosedError);
    await expect(
      store.append(id, [{ type: 'Placed', data: { total: 1 } }], { expectedLastEventId: null }),
    ).rejects.toBeInstanceOf(StreamClosedError);
    expect(await hotCount(id)).toBe(0);
  });

  test('refuses with typed errors, moving nothing: an open stream, one a view has not handled, one that does not exist', async () => {
    const open = `order-${randomUUID()}`;
    await handle(open, { place: 1 });
    await expect(archiveStream(db, 'ArchivedOrder', open)).rejects.toBeInstanceOf(StreamNotClosedError);

    const view = `view-${randomUUID()}`;
    await database.sql`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY['ArchivedOrder']::text[], NULL)`;
    const unhandled = await shippedOrder();
    const refused = await archiveStream(db, 'ArchivedOrder', unhandled).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StreamNotHandledError);
    expect(refused).toMatchObject({ view, deciderId: unhandled });
    expect(await hotCount(unhandled)).toBe(2);
    await database.sql`DELETE FROM views WHERE view = ${view}`;

    const missing = await archiveStream(db, 'ArchivedOrder', 'no-such-order').catch(
      (error: unknown) => error,
    );
    expect(missing).toBeInstanceOf(ValidationError);
    expect((missing as ValidationError).issues[0]?.path).toBe('deciderId');
  });
});

describe('archiveClosedStreams and removeArchivedStreams', () => {
  test('archive every closed stream batch by batch, then remove those past the age, batch by batch', async () => {
    const ids = [await shippedOrder(), await shippedOrder(), await shippedOrder()];
    const open = `order-${randomUUID()}`;
    await handle(open, { place: 3 });
    const batches: number[] = [];
    const archived = await archiveClosedStreams(db, {
      closedBefore: new Date(Date.now() + 60_000),
      batchSize: 2,
      onBatch: (n) => batches.push(n),
    });
    // Other tests' closed streams go too: this database is this file's.
    expect(archived).toBeGreaterThanOrEqual(3);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(archived);
    expect(Math.max(...batches)).toBeLessThanOrEqual(2);
    for (const id of ids) expect((await store.loadStream(id)).archived?.removedAt).toBeNull();
    expect(await hotCount(open)).toBe(1);

    // Nothing is old enough for a year; everything is for no time at all.
    expect(await removeArchivedStreams(db, { olderThan: '1 year' })).toBe(0);
    const removedBatches: number[] = [];
    const removed = await removeArchivedStreams(db, {
      olderThan: '0 seconds',
      batchSize: 2,
      onBatch: (n) => removedBatches.push(n),
    });
    // With the streams archived one by one above.
    expect(removed).toBeGreaterThanOrEqual(archived);
    expect(
      await database.sql`SELECT count(*)::int AS n FROM archived_streams WHERE removed_at IS NULL`,
    ).toEqual([{ n: 0 }]);
    expect(Math.max(...removedBatches)).toBeLessThanOrEqual(2);
    for (const id of ids) {
      const loaded = await store.loadStream(id);
      expect(loaded.events).toEqual([]);
      expect(loaded.archived?.removedAt).toBeInstanceOf(Date);
    }
    const [audit] = await database.sql<{ streams: number }[]>`
      SELECT sum(streams)::int AS streams FROM retention_runs`;
    expect(audit?.streams).toBe(removed);
  });

  test('bad input is a ValidationError before anything runs, or from SQL, and removes nothing', async () => {
    await expect(archiveClosedStreams(db, { closedBefore: new Date(Number.NaN) })).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(archiveClosedStreams(db, { closedBefore: new Date(), batchSize: 0 })).rejects.toBeInstanceOf(
      ValidationError,
    );
    for (const olderThan of ['', 'forever', '-1 day'])
      await expect(removeArchivedStreams(db, { olderThan })).rejects.toBeInstanceOf(ValidationError);
  });
});
