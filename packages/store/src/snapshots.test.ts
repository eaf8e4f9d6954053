/**
 * Snapshots in the command handler: it loads the newest snapshot of its decider's version and only the events
 * after it, stores one every N events once the append committed, and stays a cache: deleting the snapshots changes
 * no result, a new version ignores the old ones, a command still applies once across a snapshot, and a snapshot
 * that cannot be written or read costs time, never events. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCommandHandler, type Decider, type SnapshotOptions } from './command-handler.js';
import { ValidationError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';
import { deleteSnapshots, getSnapshot } from './functions.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));

const tallyEvents = defineEvents('SnapshotTally', { Counted: event<{ by: number }>() });
type State = { total: number; counts: number };
const tally: Decider<{ add: number }, State, EventOf<typeof tallyEvents>> = {
  initialState: { total: 0, counts: 0 },
  decide: (command) => (command.add === 0 ? [] : [{ type: 'Counted', data: { by: command.add } }]),
  evolve: (state, e) => ({ total: state.total + e.data.by, counts: state.counts + 1 }),
};
const store = createEventStore(db, tallyEvents);
beforeAll(() => store.register());
const stream = () => `tally-${randomUUID()}`;
const snapshotOf = (deciderId: string, version = 'v1') =>
  getSnapshot(db, { decider: 'SnapshotTally', deciderId, version });
const handlerWith = (snapshots?: SnapshotOptions<State>) =>
  createCommandHandler(store, tally, snapshots ? { snapshots } : {});

describe('loading and storing', () => {
  test('stores the state every N events, at the last event folded into it', async () => {
    const id = stream();
    const handle = handlerWith({ every: 3, version: 'v1' });
    const results = [];
    for (let i = 1; i <= 7; i++) results.push(await handle(id, { add: i }));
    const snapshot = await snapshotOf(id);
    // Written after the 3rd and the 6th event; the 7th is one past it.
    expect(snapshot?.offset).toBe(results[5]?.events[0]?.offset);
    expect(snapshot?.eventId).toBe(results[5]?.events[0]?.eventId);
    expect(snapshot?.state).toEqual({ total: 21, counts: 6 });
    expect(results.at(-1)?.state).toEqual({ total: 28, counts: 7 });
  });

  test('loads the snapshot and only the events after it: a snapshot altered by hand shows through', async () => {
    const id = stream();
    const handle = handlerWith({ every: 2, version: 'v1' });
    for (let i = 0; i < 4; i++) await handle(id, { add: 1 });
    // Only a load that starts from the snapshot can see this.
    await database.sql`UPDATE snapshots SET state = '{"total": 1000, "counts": 4}' WHERE decider_id = ${id}`;
    expect((await handle(id, { add: 1 })).state).toEqual({ total: 1001, counts: 5 });
    // Without snapshots, the events alone.
    expect((await handlerWith()(id, { add: 1 })).state).toEqual({ total: 6, counts: 6 });
  });

  test('deleting every snapshot changes no result, only how much is read', async () => {
    const withSnapshots = handlerWith({ every: 2, version: 'v1' });
    const without = handlerWith();
    const [a, b] = [stream(), stream()];
    const commands = [3, 0, 5, 7, 0, 11, 13, 17];
    const states = { with: [] as State[], without: [] as State[] };
    for (const [i, add] of commands.entries()) {
      if (i === 5) expect(await deleteSnapshots(db, 'SnapshotTally')).toBeGreaterThan(0);
      states.with.push((await withSnapshots(a, { add })).state);
      states.without.push((await without(b, { add })).state);
    }
    expect(states.with).toEqual(states.without);
    expect((await store.load(a)).map((e) => e.data.by)).toEqual((await store.load(b)).map((e) => e.data.by));
  });

  test('a new version ignores the older snapshots and stores its own', async () => {
    const id = stream();
    for (let i = 0; i < 3; i++) await handlerWith({ every: 1, version: 'v1' })(id, { add: 2 });
    await database.sql`UPDATE snapshots SET state = '{"total": -1, "counts": 0}' WHERE decider_id = ${id}`;
    const v2 = handlerWith({ every: 1, version: 'v2' });
    expect((await v2(id, { add: 2 })).state).toEqual({ total: 8, counts: 4 });
    expect((await snapshotOf(id, 'v2'))?.state).toEqual({ total: 8, counts: 4 });
    expect((await snapshotOf(id, 'v1'))?.state).toEqual({ total: -1, counts: 0 });
  });

  test('the state goes through toJson and fromJson, for states that are not JSON', async () => {
    const id = stream();
    const seen = new Map<string, number>();
    const handle = createCommandHandler(
      store,
      {
        initialState: new Set<number>(),
        decide: (command: { add: number }) => [{ type: 'Counted' as const, data: { by: command.add } }],
        evolve: (state: Set<number>, e) => new Set([...state, e.data.by]),
      },
      {
        snapshots: {
          every: 1,
          version: 'set-v1',
          toJson: (state) => [...state],
          fromJson: (json) => {
            seen.set(id, (seen.get(id) ?? 0) + 1);
            return new Set(json as number[]);
          },
        },
      },
    );
    await handle(id, { add: 1 });
    const { state } = await handle(id, { add: 2 });
    expect([...state]).toEqual([1, 2]);
    expect(seen.get(id)).toBe(1);
  });
});

describe('a cache, never a source of truth', () => {
  test('a command applies once across a snapshot: its retry after one was taken returns its events', async () => {
    const id = stream();
    const handle = handlerWith({ every: 1, version: 'v1' });
    const commandId = randomUUID();
    const first = await handle(id, { add: 5 }, { commandId });
    await handle(id, { add: 1 }); // and a snapshot past it
    expect((await snapshotOf(id))?.offset).toBeGreaterThan(first.events[0]?.offset ?? 0);
    const again = await handle(id, { add: 5 }, { commandId });
    expect(again.replayed).toBe(true);
    expect(again.events.map((e) => e.eventId)).toEqual(first.events.map((e) => e.eventId));
    expect(again.state).toEqual({ total: 6, counts: 2 });
    expect((await store.load(id)).map((e) => e.data.by)).toEqual([5, 1]);
  });

  test('a snapshot that cannot be written costs nothing but time: the command is applied all the same', async () => {
    const id = stream();
    const handle = handlerWith({
      every: 1,
      version: 'v1',
      toJson: () => {
        throw new Error('cannot serialise');
      },
    });
    expect((await handle(id, { add: 4 })).state).toEqual({ total: 4, counts: 1 });
    expect((await handle(id, { add: 4 })).state).toEqual({ total: 8, counts: 2 });
    expect(await snapshotOf(id)).toBeUndefined();
    expect(await store.load(id)).toHaveLength(2);
  });

  test('a snapshot that fromJson cannot read is passed over: the stream is read whole', async () => {
    const id = stream();
    await handlerWith({ every: 1, version: 'v1' })(id, { add: 3 });
    const strict = handlerWith({
      every: 1,
      version: 'v1',
      fromJson: () => {
        throw new Error('an older shape');
      },
    });
    expect((await strict(id, { add: 3 })).state).toEqual({ total: 6, counts: 2 });
  });

  test("inside the caller's transaction no snapshot is written: the events are not committed yet", async () => {
    const id = stream();
    await db.transaction(async (tx) => {
      const handle = createCommandHandler(store.with(tx), tally, { snapshots: { every: 1, version: 'v1' } });
      await handle(id, { add: 1 });
    });
    expect(await snapshotOf(id)).toBeUndefined();
    expect(await store.load(id)).toHaveLength(1);
  });

  test('bad options are refused', () => {
    expect(() => handlerWith({ every: 0, version: 'v1' })).toThrow(ValidationError);
    expect(() => handlerWith({ every: 10, version: '' })).toThrow(ValidationError);
  });
});
