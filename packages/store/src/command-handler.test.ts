/**
 * The command handler applies a command once: given its id, through a second call, concurrent calls, and a commit
 * whose answer was lost. On a real PostgreSQL, through a proxy that cuts a connection right after a commit.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase, startCuttingProxy } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCommandHandler, type Decider } from './command-handler.js';
import { FstoreError, ValidationError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';

const database = await createTestDatabase();
afterAll(() => database.drop());

// A counter: each command adds to it with one event; "noop" decides nothing.
const counterEvents = defineEvents('HandledCounter', { Added: event<{ by: number }>() });
type Command = { add: number } | { noop: true };
/** The counter's decider, counting its decisions and calling `beforeAppend` after each (to cut the append). */
function counter(beforeAppend: () => void = () => {}) {
  const decider: Decider<Command, number, EventOf<typeof counterEvents>> & { decisions: number } = {
    decisions: 0,
    initialState: 0,
    decide(command) {
      decider.decisions++;
      if ('noop' in command) return [];
      beforeAppend();
      return [{ type: 'Added', data: { by: command.add } }];
    },
    evolve: (total, e) => total + e.data.by,
  };
  return decider;
}

const store = createEventStore(drizzle(database.connect({ max: 4 })), counterEvents);
beforeAll(() => store.register());
const stream = () => `counter-${randomUUID()}`;

describe('with the caller’s command id', () => {
  test('a second call returns the command’s events, replayed, without deciding again', async () => {
    const decider = counter();
    const handle = createCommandHandler(store, decider);
    const id = stream();
    const commandId = randomUUID();
    const first = await handle(id, { add: 2 }, { commandId });
    await handle(id, { add: 5 }); // another command after it
    const second = await handle(id, { add: 2 }, { commandId });
    expect(first).toMatchObject({ replayed: false, commandId, state: 2 });
    expect(second).toMatchObject({ replayed: true, commandId, state: 7, attempts: 1 });
    expect(second.events.map((e) => e.eventId)).toEqual(first.events.map((e) => e.eventId));
    // Where the command's events end: what a reader of its own write waits on.
    expect(second.position).toEqual({ deciderId: id, offset: first.events[0]?.offset });
    expect(first.position).toEqual(second.position);
    expect(decider.decisions).toBe(2);
    expect((await store.load(id)).map((e) => e.data.by)).toEqual([2, 5]);
  });

  test('five concurrent calls with one command id, each on its own connection: applied once, all five return it', async () => {
    const id = stream();
    await store.append(id, [{ type: 'Added', data: { by: 1 } }], { expectedLastEventId: null });
    const commandId = randomUUID();
    const results = await Promise.all(
      Array.from({ length: 5 }, () => {
        const own = createEventStore(drizzle(database.connect({ max: 1 })), counterEvents);
        return createCommandHandler(own, counter(), { backoffMs: 1 })(id, { add: 10 }, { commandId });
      }),
    );
    const stored = await store.load(id);
    expect(stored.map((e) => e.data.by)).toEqual([1, 10]);
    for (const result of results) expect(result.events.map((e) => e.eventId)).toEqual([stored[1]?.eventId]);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
  });

  test('a command id that is not a UUID is refused before any SQL runs', async () => {
    const decider = counter();
    const failure = await createCommandHandler(store, decider)(
      stream(),
      { add: 1 },
      { commandId: 'order-7' },
    ).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ValidationError);
    expect(decider.decisions).toBe(0);
  });
});

describe('a commit whose answer is lost', () => {
  async function throughProxy() {
    const proxy = await startCuttingProxy(database.url);
    const { hostname, port } = new URL(proxy.url);
    const client = database.connect({ max: 1, host: hostname, port: Number(port) });
    return { proxy, client, store: createEventStore(drizzle(client), counterEvents) };
  }

  test.each([
    { with: 'the caller’s command id', commandId: randomUUID() },
    { with: 'the id the call drew', commandId: undefined },
  ])(
    'with $with, the handler retries, finds the command applied, and returns it: once',
    async ({ commandId }) => {
      const { proxy, client, store: cut } = await throughProxy();
      try {
        const id = stream();
        await cut.append(id, [{ type: 'Added', data: { by: 1 } }], { expectedLastEventId: null });
        // Decided: the next statement, the append, commits and its answer is lost.
        const decider = counter(() => proxy.cutAfterNextCommit());
        const result = await createCommandHandler(cut, decider)(
          id,
          { add: 3 },
          commandId ? { commandId } : {},
        );
        expect(result).toMatchObject({ replayed: true, state: 4, attempts: 2 });
        expect(decider.decisions).toBe(1);
        const stored = await store.load(id);
        expect(stored.map((e) => e.data.by)).toEqual([1, 3]);
        expect(result.events.map((e) => e.eventId)).toEqual([stored[1]?.eventId]);
        if (commandId) expect(result.commandId).toBe(commandId);
      } finally {
        await client.end({ timeout: 1 }).catch(() => {});
        await proxy.close();
      }
    },
  );

  test('with reconnectForMs 0, the connection error reaches the caller, and the command was applied all the same', async () => {
    const { proxy, client, store: cut } = await throughProxy();
    try {
      const id = stream();
      await cut.append(id, [{ type: 'Added', data: { by: 1 } }], { expectedLastEventId: null });
      const commandId = randomUUID();
      const handle = createCommandHandler(
        cut,
        counter(() => proxy.cutAfterNextCommit()),
        { reconnectForMs: 0 },
      );
      const failure = await handle(id, { add: 3 }, { commandId }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(Error);
      expect(failure).not.toBeInstanceOf(FstoreError);
      // The caller's own retry, with the same id, is safe: it finds the command applied.
      const retried = await createCommandHandler(store, counter())(id, { add: 3 }, { commandId });
      expect(retried).toMatchObject({ replayed: true, state: 4 });
      expect((await store.load(id)).map((e) => e.data.by)).toEqual([1, 3]);
    } finally {
      await client.end({ timeout: 1 }).catch(() => {});
      await proxy.close();
    }
  });
});

test('a command that decides nothing appends nothing and is not replayed', async () => {
  const id = stream();
  const result = await createCommandHandler(store, counter())(
    id,
    { noop: true },
    { commandId: randomUUID() },
  );
  expect(result).toMatchObject({ events: [], replayed: false, state: 0, attempts: 1, position: undefined });
  expect(await store.load(id)).toEqual([]);
});

test('handler options out of range are refused when the handler is made', () => {
  expect(() => createCommandHandler(store, counter(), { maxAttempts: 0 })).toThrow(ValidationError);
  expect(() => createCommandHandler(store, counter(), { reconnectForMs: -1 })).toThrow(ValidationError);
});
