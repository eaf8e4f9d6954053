/**
 * The store under real concurrency: several connections writing one stream, a commit whose answer is lost, and
 * the command handler under any interleaving of concurrent commands (property-based, with fast-check).
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase, startCuttingProxy } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCommandHandler, type Decider } from './command-handler.js';
import { databaseError, FstoreError, OptimisticConcurrencyError } from './errors.js';
import { createEventStore, type EventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';
import { orderEvents } from './test-support/orders.js';

const database = await createTestDatabase();
afterAll(() => database.drop());

const connect = () => drizzle(database.connect({ max: 1 }));
const store = createEventStore(connect(), orderEvents);
beforeAll(() => store.register());

const created = { type: 'OrderCreated' as const, data: { customer: 'Ada', items: [] } };
const added = { type: 'ItemAdded' as const, data: { sku: 'tea', quantity: 1 } };

describe('several writers on one stream', () => {
  test('two writers after the same event: one appends, the other gets an OptimisticConcurrencyError', async () => {
    const id = `order-${randomUUID()}`;
    const [first] = await store.append(id, [created], { expectedLastEventId: null });
    const a = createEventStore(connect(), orderEvents);
    const b = createEventStore(connect(), orderEvents);
    const results = await Promise.allSettled([
      a.append(id, [added], { expectedLastEventId: first?.eventId ?? null }),
      b.append(id, [added], { expectedLastEventId: first?.eventId ?? null }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const [rejected] = results.filter((r) => r.status === 'rejected');
    expect(rejected?.reason).toBeInstanceOf(OptimisticConcurrencyError);
    expect(rejected?.reason).toMatchObject({ deciderId: id, expected: first?.eventId });
    expect(await store.load(id)).toHaveLength(2);
  });

  test('eight writers, fifteen attempts each: exactly one append per position, and the chain never forks', async () => {
    const id = `order-${randomUUID()}`;
    const writers = Array.from({ length: 8 }, () => createEventStore(connect(), orderEvents));
    let appended = 0;
    let conflicts = 0;
    await Promise.all(
      writers.map(async (writer) => {
        for (let attempt = 0; attempt < 15; attempt++) {
          const last = await writer.loadLast(id);
          try {
            await writer.append(id, [last ? added : created], { expectedLastEventId: last?.eventId ?? null });
            appended++;
          } catch (error) {
            if (!(error instanceof OptimisticConcurrencyError)) throw error;
            conflicts++;
          }
        }
      }),
    );
    const stream = await store.load(id);
    expect(stream).toHaveLength(appended);
    expect(appended + conflicts).toBe(8 * 15);
    expect(stream[0]?.previousId).toBeNull();
    for (let i = 1; i < stream.length; i++) expect(stream[i]?.previousId).toBe(stream[i - 1]?.eventId);
  });
});

describe('a commit whose answer is lost', () => {
  test('the connection error passes through untouched, and the retry with the same ids writes nothing new', async () => {
    const proxy = await startCuttingProxy(database.url);
    const { hostname, port } = new URL(proxy.url);
    const through = database.connect({ max: 1, host: hostname, port: Number(port) });
    try {
      const cut = createEventStore(drizzle(through), orderEvents);
      const id = `order-${randomUUID()}`;
      const commandId = randomUUID();
      const batch = [
        { ...created, eventId: randomUUID() },
        { ...added, eventId: randomUUID() },
      ];
      // Append once on another stream first, so the connection is up and the statement prepared: the cut then
      // falls on the append itself, after its commit.
      await cut.append(`order-${randomUUID()}`, [created, added], { expectedLastEventId: null });
      proxy.cutAfterNextCommit();
      const lost = await cut.append(id, batch, { expectedLastEventId: null, commandId }).catch((e) => e);
      expect(lost).toBeInstanceOf(Error);
      expect(lost).not.toBeInstanceOf(FstoreError);
      // The client cannot know, but the server committed:
      const committed = await store.load(id);
      expect(committed.map((e) => e.eventId)).toEqual(batch.map((e) => e.eventId));
      // The retry (here on a healthy connection) returns what is stored and writes nothing.
      const retried = await store.append(id, batch, { expectedLastEventId: null, commandId });
      expect(retried).toEqual(committed);
      expect(await store.load(id)).toHaveLength(2);
    } finally {
      await through.end({ timeout: 1 }).catch(() => {});
      await proxy.close();
    }
  });
});

describe('an append rolled back by a serialization failure (40001)', () => {
  /**
   * Appends write only the event now, so no lock row of a worker can make one fail any more; YugabyteDB may still
   * roll any write back with 40001, and PostgreSQL does under REPEATABLE READ or SERIALIZABLE. Staged here by a
   * trigger in this file's database that raises the given SQLSTATEs on the stream's first inserts, in order (a
   * sequence counts them: its values survive the rollback).
   */
  async function failingAppends(id: string, codes: string[]) {
    const name = `fail_${randomUUID().replaceAll('-', '')}`;
    const raise = codes
      .map((code, n) => `WHEN ${n + 1} THEN RAISE EXCEPTION 'staged' USING ERRCODE = '${code}';`)
      .join(' ');
    await database.sql.unsafe(`CREATE SEQUENCE ${name}`);
    await database.sql.unsafe(
      `CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $f$
       BEGIN
         IF NEW.decider_id = '${id}' THEN
           CASE nextval('${name}') ${raise} ELSE NULL; END CASE;
         END IF;
         RETURN NEW;
       END $f$`,
    );
    await database.sql.unsafe(
      `CREATE TRIGGER ${name} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION ${name}()`,
    );
    return async () => {
      await database.sql.unsafe(`DROP TRIGGER ${name} ON events`);
      await database.sql.unsafe(`DROP FUNCTION ${name}()`);
      await database.sql.unsafe(`DROP SEQUENCE ${name}`);
    };
  }

  async function appendRolledBack(codes: string[], options: { transientRetries?: number }) {
    const id = `order-${randomUUID()}`;
    const [first] = await store.append(id, [created], { expectedLastEventId: null });
    const writer = createEventStore(connect(), orderEvents, options);
    const restore = await failingAppends(id, codes);
    try {
      const outcome = await writer.append(id, [added], { expectedLastEventId: first?.eventId ?? null }).then(
        (events) => ({ events }),
        (error: unknown) => ({ error }),
      );
      return { id, outcome };
    } finally {
      await restore();
    }
  }

  test('store.append runs it again, once stored: the event is in the stream once', async () => {
    const { id, outcome } = await appendRolledBack(['40001', '40P01'], {});
    expect(outcome).toMatchObject({ events: [{ type: 'ItemAdded' }] });
    expect((await store.load(id)).map((e) => e.type)).toEqual(['OrderCreated', 'ItemAdded']);
  });

  test('with transientRetries: 0, the 40001 reaches the caller as it is, and nothing is written', async () => {
    const { id, outcome } = await appendRolledBack(['40001'], { transientRetries: 0 });
    expect('error' in outcome && databaseError(outcome.error)?.code).toBe('40001');
    expect((await store.load(id)).map((e) => e.type)).toEqual(['OrderCreated']);
  });

  test("inside a caller's transaction (store.with(tx)), it is never retried: the transaction is aborted", async () => {
    const id = `order-${randomUUID()}`;
    const [first] = await store.append(id, [created], { expectedLastEventId: null });
    const restore = await failingAppends(id, ['40001']);
    try {
      const failure = await connect()
        .transaction(
          async (tx) => {
            await store.with(tx).append(id, [added], { expectedLastEventId: first?.eventId ?? null });
          },
          { isolationLevel: 'repeatable read' },
        )
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(databaseError(failure)?.code).toBe('40001');
      expect((await store.load(id)).map((e) => e.type)).toEqual(['OrderCreated']);
    } finally {
      await restore();
    }
  });
});

describe('the command handler under concurrent commands (property-based)', () => {
  // A bank account: every command yields exactly one event, so the stream is the serial order the commands took.
  const accountEvents = defineEvents(`Account-${randomUUID()}`, {
    Deposited: event<{ amount: number; command: number }>(),
    Withdrawn: event<{ amount: number; command: number }>(),
    WithdrawalRefused: event<{ amount: number; command: number; balance: number }>(),
  });
  type Command = { kind: 'deposit' | 'withdraw'; amount: number; command: number };
  const account: Decider<Command, number, EventOf<typeof accountEvents>> = {
    initialState: 0,
    decide: (c, balance) => {
      if (c.kind === 'deposit')
        return [{ type: 'Deposited', data: { amount: c.amount, command: c.command } }];
      return balance >= c.amount
        ? [{ type: 'Withdrawn', data: { amount: c.amount, command: c.command } }]
        : [{ type: 'WithdrawalRefused', data: { amount: c.amount, command: c.command, balance } }];
    },
    evolve: (balance, e) =>
      e.type === 'Deposited'
        ? balance + e.data.amount
        : e.type === 'Withdrawn'
          ? balance - e.data.amount
          : balance,
  };
  let clients: EventStore<typeof accountEvents>[] = [];
  beforeAll(async () => {
    clients = Array.from({ length: 4 }, () => createEventStore(connect(), accountEvents));
    await clients[0]?.register();
  });

  test('any interleaving yields a stream whose fold equals a serial run of the same commands', async () => {
    const command = fc.record({
      kind: fc.constantFrom('deposit' as const, 'withdraw' as const),
      amount: fc.integer({ min: 1, max: 50 }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(command, { maxLength: 6 }), { minLength: 2, maxLength: 4 }),
        async (perClient) => {
          const id = `account-${randomUUID()}`;
          let numbered = 0;
          const commands = perClient.map((list) => list.map((c) => ({ ...c, command: numbered++ })));
          const results = await Promise.all(
            commands.map(async (list, i) => {
              const handle = createCommandHandler(clients[i] as EventStore<typeof accountEvents>, account, {
                maxAttempts: 100,
                backoffMs: 1,
                maxBackoffMs: 20,
              });
              const states = [];
              for (const c of list) states.push((await handle(id, c)).state);
              return states;
            }),
          );
          const stream = await clients[0]?.load(id);
          // Every command is in the stream exactly once.
          expect(stream?.map((e) => e.data.command).sort((x, y) => x - y)).toEqual([
            ...Array(numbered).keys(),
          ]);
          // Deciding the commands one after the other, in the order the stream holds them, gives the same events.
          const byNumber = new Map(commands.flat().map((c) => [c.command, c]));
          let state = account.initialState;
          const passed = new Set<number>();
          for (const stored of stream ?? []) {
            const [expected] = await account.decide(byNumber.get(stored.data.command) as Command, state);
            expect({ type: stored.type, data: stored.data }).toEqual(expected);
            state = account.evolve(state, stored);
            passed.add(state);
          }
          expect(state).toBeGreaterThanOrEqual(0);
          // Every state the handler returned to a client is one the account really passed through.
          for (const states of results) for (const s of states) expect(passed).toContain(s);
        },
      ),
      { numRuns: 12 },
    );
  });
});
