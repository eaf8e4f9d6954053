/**
 * The event store's specification as one connection sees it. It runs on PostgreSQL through postgres.js
 * (event-store.test.ts) and in process on PGlite (event-store.pglite.test.ts). What needs two connections (races, a
 * lost commit) is in concurrency.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { events } from '@fstore/schema';
import { type } from 'arktype';
import { eq, sql } from 'drizzle-orm';
import { beforeAll, describe, expect, test } from 'vitest';
import { archiveStream, removeArchivedStreams } from '../archive.js';
import type { Database } from '../database.js';
import {
  CommandAlreadyAppliedError,
  DuplicateEventError,
  OptimisticConcurrencyError,
  PayloadTooLargeError,
  StreamClosedError,
  UnknownEventTypeError,
  UnreadableEventError,
  ValidationError,
} from '../errors.js';
import { createEventStore, type EventStore } from '../event-store.js';
import { defineEvents, type EventOf, event } from '../events.js';
import { appendEvent, appendEvents, getEvents, getLastEvent, registerDeciderEvent } from '../functions.js';
import {
  eventsBetween,
  eventsInOffsetRange,
  eventsOfStream,
  eventsOfType,
  streamsOfDecider,
  viewProgress,
} from '../queries.js';
import { orderEvents } from './orders.js';

export interface Connection {
  db: Database;
  /** How many statements the database has been sent so far. */
  statements(): number;
}

type OrderEvent = EventOf<typeof orderEvents>;
const created: OrderEvent = {
  type: 'OrderCreated',
  data: { customer: 'Ada', items: [{ sku: 'tea', quantity: 2 }] },
};
const added: OrderEvent = { type: 'ItemAdded', data: { sku: 'cake', quantity: 1 } };
const placed: OrderEvent = { type: 'OrderPlaced', data: { placedAt: '2026-11-26T10:00:00Z' } };

export function describeEventStore(driver: string, connect: () => Promise<Connection>) {
  describe(`event store (${driver})`, () => {
    let connection: Connection;
    let db: Database;
    let store: EventStore<typeof orderEvents>;
    const newStream = () => `order-${randomUUID()}`;

    beforeAll(async () => {
      connection = await connect();
      db = connection.db;
      store = createEventStore(db, orderEvents);
      await store.register();
    });

    /** Asserts that `fn` fails with `ErrorClass` without sending a single statement to the database. */
    async function refusedBeforeSql<T extends Error>(
      fn: () => Promise<unknown>,
      ErrorClass: new (...args: never[]) => T,
    ): Promise<T> {
      const before = connection.statements();
      const error = await fn().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ErrorClass);
      expect(connection.statements()).toBe(before);
      return error as T;
    }

    describe('registering event types', () => {
      test('registers every declared type at its version, with its description, and again changes nothing', async () => {
        const again = await store.register();
        expect(again).toHaveLength(5);
        expect(again.find((row) => row.event === 'OrderCreated')).toEqual({
          decider: 'Order',
          event: 'OrderCreated',
          eventVersion: 1,
          description: 'A customer opened an order',
        });
      });
    });

    describe('appending', () => {
      test('appends the events of a command and loads them back typed, in order', async () => {
        const id = newStream();
        const commandId = randomUUID();
        const stored = await store.append(id, [created, added], { expectedLastEventId: null, commandId });
        expect(stored.map((e) => [e.type, e.data, e.commandId, e.deciderId, e.version])).toEqual([
          [created.type, created.data, commandId, id, 1],
          [added.type, added.data, commandId, id, 1],
        ]);
        expect(stored[1]?.previousId).toBe(stored[0]?.eventId);
        expect(await store.load(id)).toEqual(stored);
        const last = await store.loadLast(id);
        expect(last?.eventId).toBe(stored[1]?.eventId);
        if (last?.type === 'ItemAdded') expect(last.data.sku).toBe('cake');
      });

      test('appends after the last event the caller saw', async () => {
        const id = newStream();
        const [first] = await store.append(id, [created], { expectedLastEventId: null });
        const [second] = await store.append(id, [placed], { expectedLastEventId: first?.eventId ?? null });
        expect(second?.previousId).toBe(first?.eventId);
      });

      test('a stale expectation is an OptimisticConcurrencyError with what was expected and found; nothing is written', async () => {
        const id = newStream();
        const [first] = await store.append(id, [created], { expectedLastEventId: null });
        const [second] = await store.append(id, [added], { expectedLastEventId: first?.eventId ?? null });
        const error = await store
          .append(id, [placed], { expectedLastEventId: first?.eventId ?? null })
          .catch((e) => e);
        expect(error).toBeInstanceOf(OptimisticConcurrencyError);
        expect(error).toMatchObject({
          decider: 'Order',
          deciderId: id,
          expected: first?.eventId,
          found: second?.eventId,
        });
        const notNew = await store.append(id, [created], { expectedLastEventId: null }).catch((e) => e);
        expect(notNew).toMatchObject({
          name: 'OptimisticConcurrencyError',
          expected: null,
          found: second?.eventId,
        });
        expect(await store.load(id)).toHaveLength(2);
      });

      test('expecting an event on a stream that does not exist is a conflict too', async () => {
        const error = await store
          .append(newStream(), [added], { expectedLastEventId: randomUUID() })
          .catch((e) => e);
        expect(error).toBeInstanceOf(OptimisticConcurrencyError);
        expect(error.found).toBeNull();
      });

      test('appending the same ids and content again returns the stored events and writes nothing', async () => {
        const id = newStream();
        const commandId = randomUUID();
        const batch = [
          { ...created, eventId: randomUUID() },
          { ...added, eventId: randomUUID() },
        ];
        const stored = await store.append(id, batch, { expectedLastEventId: null, commandId });
        const retried = await store.append(id, batch, { expectedLastEventId: null, commandId });
        expect(retried).toEqual(stored);
        expect(await store.load(id)).toHaveLength(2);
      });

      test('once per command: a command the stream holds is a CommandAlreadyAppliedError, whatever its events; nothing is written', async () => {
        const id = newStream();
        const commandId = randomUUID();
        const batch = [{ ...created, eventId: randomUUID() }];
        const [first] = await store.append(id, batch, {
          expectedLastEventId: null,
          commandId,
          oncePerCommand: true,
        });
        // The very same batch again is a retry: the stored events come back.
        expect(
          await store.append(id, batch, { expectedLastEventId: null, commandId, oncePerCommand: true }),
        ).toEqual([first]);
        const error = await store
          .append(id, [added], {
            expectedLastEventId: first?.eventId ?? null,
            commandId,
            oncePerCommand: true,
          })
          .catch((e) => e);
        expect(error).toBeInstanceOf(CommandAlreadyAppliedError);
        expect(error).toMatchObject({ deciderId: id, commandId });
        expect(await store.load(id)).toHaveLength(1);
        // Without it, the command may append again, as fstore-sql lets it.
        await store.append(id, [added], { expectedLastEventId: first?.eventId ?? null, commandId });
        expect(await store.load(id)).toHaveLength(2);
      });

      test('the same event id with other content is a DuplicateEventError', async () => {
        const id = newStream();
        const eventId = randomUUID();
        await store.append(id, [{ ...created, eventId }], { expectedLastEventId: null });
        const error = await store
          .append(newStream(), [{ ...placed, eventId }], { expectedLastEventId: null })
          .catch((e) => e);
        expect(error).toBeInstanceOf(DuplicateEventError);
        expect(error.eventId).toBe(eventId);
      });

      test('a final event closes the stream: StreamClosedError afterwards', async () => {
        const id = newStream();
        const stored = await store.append(
          id,
          [created, { type: 'OrderCancelled', data: { reason: 'changed mind' } }],
          {
            expectedLastEventId: null,
          },
        );
        expect(stored.map((e) => e.final)).toEqual([false, true]);
        const error = await store
          .append(id, [added], { expectedLastEventId: stored[1]?.eventId ?? null })
          .catch((e) => e);
        expect(error).toBeInstanceOf(StreamClosedError);
        expect(error).toMatchObject({ decider: 'Order', deciderId: id });
      });

      test('an archived stream loads from the archive and says so, stays closed, and is gone once removed', async () => {
        const id = newStream();
        const stored = await store.append(
          id,
          [created, { type: 'OrderCancelled', data: { reason: 'archived' } }],
          { expectedLastEventId: null },
        );
        // No view of this database reads it yet: it can go (views registered later start after it).
        const archived = await archiveStream(db, 'Order', id);
        expect(archived).toMatchObject({ deciderId: id, events: 2, removedAt: null });
        expect(await store.loadStream(id)).toEqual({ events: stored, archived });
        await expect(
          store.append(id, [added], { expectedLastEventId: stored[1]?.eventId ?? null }),
        ).rejects.toBeInstanceOf(StreamClosedError);
        await db.execute(
          sql`UPDATE archived_streams SET closed_at = closed_at - interval '2 days' WHERE decider_id = ${id}`,
        );
        expect(await removeArchivedStreams(db, { olderThan: '1 day' })).toBe(1);
        const removed = await store.loadStream(id);
        expect(removed.events).toEqual([]);
        expect(removed.archived?.removedAt).toBeInstanceOf(Date);
      });

      test('an event type the database does not know is an UnknownEventTypeError', async () => {
        const unregistered = createEventStore(
          db,
          defineEvents(`Unregistered-${randomUUID()}`, { Happened: event<{ n: number }>() }),
        );
        const error = await unregistered
          .append(newStream(), [{ type: 'Happened', data: { n: 1 } }], { expectedLastEventId: null })
          .catch((e) => e);
        expect(error).toBeInstanceOf(UnknownEventTypeError);
        expect(error.types).toEqual([{ type: 'Happened', version: 1 }]);
      });

      test("appends inside a Drizzle transaction, atomically with the caller's own writes", async () => {
        await db.execute(
          sql`CREATE TABLE IF NOT EXISTS outbox (id serial PRIMARY KEY, stream text NOT NULL)`,
        );
        const committed = newStream();
        await db.transaction(async (tx) => {
          await store.with(tx).append(committed, [created], { expectedLastEventId: null });
          await tx.execute(sql`INSERT INTO outbox (stream) VALUES (${committed})`);
        });
        const rolledBack = newStream();
        await db
          .transaction(async (tx) => {
            await store.with(tx).append(rolledBack, [created], { expectedLastEventId: null });
            await tx.execute(sql`INSERT INTO outbox (stream) VALUES (${rolledBack})`);
            throw new Error('the handler failed after appending');
          })
          .catch(() => {});
        expect(await store.load(committed)).toHaveLength(1);
        expect(await store.load(rolledBack)).toHaveLength(0);
        const outbox = await db.execute(
          sql`SELECT stream FROM outbox WHERE stream IN (${committed}, ${rolledBack})`,
        );
        const rows = Array.isArray(outbox) ? outbox : (outbox as unknown as { rows: unknown[] }).rows;
        expect(rows).toEqual([{ stream: committed }]);
      });
    });

    describe('bad input is refused before any SQL runs, naming the field', () => {
      const append = (id: string, events: unknown[], options: object = { expectedLastEventId: null }) =>
        store.append(id, events as OrderEvent[], options as { expectedLastEventId: null });

      test('a payload that fails its schema (zod, valibot, arktype)', async () => {
        const zod = await refusedBeforeSql(
          () =>
            append(newStream(), [
              { type: 'OrderCreated', data: { customer: '', items: [{ sku: 'x', quantity: 0 }] } },
            ]),
          ValidationError,
        );
        expect(zod.issues.map((issue) => issue.path)).toEqual([
          'events.0.data.customer',
          'events.0.data.items.0.quantity',
        ]);
        const valibot = await refusedBeforeSql(
          () => append(newStream(), [created, { type: 'ItemAdded', data: { sku: 'x', quantity: 1.5 } }]),
          ValidationError,
        );
        expect(valibot.issues[0]?.path).toBe('events.1.data.quantity');
        const arktype = await refusedBeforeSql(
          () => append(newStream(), [{ type: 'NoteWritten', data: { text: 42 } }]),
          ValidationError,
        );
        expect(arktype.issues[0]?.path).toBe('events.0.data.text');
      });

      test('the third of five events invalid: none is written', async () => {
        const id = newStream();
        const five = [created, added, { type: 'ItemAdded', data: { sku: 'x' } }, added, placed];
        const error = await refusedBeforeSql(() => append(id, five), ValidationError);
        expect(error.issues[0]?.path).toBe('events.2.data.quantity');
        expect(await store.load(id)).toEqual([]);
      });

      test('payloads JSON cannot hold as they are: undefined, BigInt, cycles, NaN, Dates, functions', async () => {
        const cyclic: Record<string, unknown> = { placedAt: 'now' };
        cyclic.self = cyclic;
        const cases: [unknown, string][] = [
          [{ placedAt: undefined }, 'events.0.data.placedAt'],
          [{ placedAt: 10n }, 'events.0.data.placedAt'],
          [cyclic, 'events.0.data.self'],
          [{ placedAt: Number.NaN }, 'events.0.data.placedAt'],
          [{ placedAt: new Date() }, 'events.0.data.placedAt'],
          [{ placedAt: () => 'now' }, 'events.0.data.placedAt'],
          [{ placedAt: 'nul \u0000 inside' }, 'events.0.data.placedAt'],
        ];
        for (const [data, path] of cases) {
          const error = await refusedBeforeSql(
            () => append(newStream(), [{ type: 'OrderPlaced', data }]),
            ValidationError,
          );
          expect(error.issues.map((issue) => issue.path)).toContain(path);
        }
      });

      test('malformed UUIDs, and empty or absurdly long stream ids', async () => {
        const ids: [string, string][] = [
          ['', 'deciderId'],
          ['x'.repeat(513), 'deciderId'],
        ];
        for (const [id, path] of ids) {
          const error = await refusedBeforeSql(() => append(id, [created]), ValidationError);
          expect(error.issues[0]?.path).toBe(path);
        }
        const badExpected = await refusedBeforeSql(
          () => append(newStream(), [created], { expectedLastEventId: 'not-a-uuid' }),
          ValidationError,
        );
        expect(badExpected.issues[0]?.path).toBe('expectedLastEventId');
        const badEventId = await refusedBeforeSql(
          () => append(newStream(), [{ ...created, eventId: '1234' }]),
          ValidationError,
        );
        expect(badEventId.issues[0]?.path).toBe('events.0.eventId');
        const badCommand = await refusedBeforeSql(
          () => append(newStream(), [created], { expectedLastEventId: null, commandId: 'x' }),
          ValidationError,
        );
        expect(badCommand.issues[0]?.path).toBe('commandId');
        const onceWithoutId = await refusedBeforeSql(
          () => append(newStream(), [created], { expectedLastEventId: null, oncePerCommand: true }),
          ValidationError,
        );
        expect(onceWithoutId.issues[0]?.path).toBe('commandId');
      });

      test('no events, an undeclared type, repeated event ids', async () => {
        await refusedBeforeSql(() => append(newStream(), []), ValidationError);
        const undeclared = await refusedBeforeSql(
          () => append(newStream(), [{ type: 'Nope', data: {} }]),
          ValidationError,
        );
        expect(undeclared.issues[0]?.path).toBe('events.0.type');
        const eventId = randomUUID();
        await refusedBeforeSql(
          () =>
            append(newStream(), [
              { ...created, eventId },
              { ...added, eventId },
            ]),
          ValidationError,
        );
      });

      test('decider and event type names that are too long are refused when the store is made', () => {
        const long = 'n'.repeat(257);
        expect(() => createEventStore(db, defineEvents(long, { Happened: event<object>() }))).toThrow(
          ValidationError,
        );
        expect(() => createEventStore(db, defineEvents('Fine', { [long]: event<object>() }))).toThrow(
          /events\.n+: must be at most 256 characters/,
        );
        expect(() => defineEvents('', { Happened: event<object>() })).toThrow(TypeError);
      });

      test('a payload over the size cap', async () => {
        const small = createEventStore(db, orderEvents, { maxPayloadBytes: 64 });
        const error = await refusedBeforeSql(
          () =>
            small.append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: 'x'.repeat(100) } }], {
              expectedLastEventId: null,
            }),
          PayloadTooLargeError,
        );
        expect(error).toMatchObject({ type: 'OrderPlaced', maxBytes: 64 });
        expect(error.bytes).toBeGreaterThan(100);
      });
    });

    describe('loading', () => {
      test('from an offset or after an event of the stream', async () => {
        const id = newStream();
        const stored = await store.append(id, [created, added, placed], { expectedLastEventId: null });
        expect(await store.load(id, { afterOffset: stored[0]?.offset ?? 0 })).toEqual(stored.slice(1));
        expect(await store.load(id, { afterEventId: stored[1]?.eventId ?? '' })).toEqual(stored.slice(2));
        const elsewhere = await store.load(id, { afterEventId: randomUUID() }).catch((e) => e);
        expect(elsewhere).toBeInstanceOf(ValidationError);
        const [other] = await store.append(newStream(), [created], { expectedLastEventId: null });
        const ofAnotherStream = await store.load(id, { afterEventId: other?.eventId ?? '' }).catch((e) => e);
        expect(ofAnotherStream).toBeInstanceOf(ValidationError);
      });

      test('iterates page by page, in order', async () => {
        const id = newStream();
        const paged = createEventStore(db, orderEvents, { pageSize: 2 });
        let last: string | null = null;
        const appended = [];
        for (let i = 0; i < 5; i++) {
          const [e] = await paged.append(id, [i === 0 ? created : added], { expectedLastEventId: last });
          last = e?.eventId ?? null;
          appended.push(e);
        }
        const seen = [];
        for await (const e of paged.iterate(id)) seen.push(e);
        expect(seen).toEqual(appended);
      });

      test('an unknown stream loads as empty, with no last event', async () => {
        expect(await store.load(newStream())).toEqual([]);
        expect(await store.loadLast(newStream())).toBeUndefined();
      });
    });

    describe('reading events written by older or other declarations', () => {
      const name = () => `Account-${randomUUID()}`;
      const v1 = (decider: string) => defineEvents(decider, { Opened: event<{ owner: string }>() });

      test('upcasts an older version through the declared upcasters, then validates it', async () => {
        const decider = name();
        const old = createEventStore(db, v1(decider));
        await old.register();
        const id = newStream();
        await old.append(id, [{ type: 'Opened', data: { owner: 'Ada Lovelace' } }], {
          expectedLastEventId: null,
        });
        const v3 = defineEvents(decider, {
          Opened: event<{ owner: { first: string; last: string }; currency: string }>({
            version: 3,
            upcast: {
              1: (data) => ({ ...(data as object), currency: 'EUR' }),
              2: (data) => {
                const { owner, currency } = data as { owner: string; currency: string };
                const [first = '', last = ''] = owner.split(' ');
                return { owner: { first, last }, currency };
              },
            },
          }),
        });
        const current = createEventStore(db, v3);
        const [loaded] = await current.load(id);
        expect(loaded).toMatchObject({
          type: 'Opened',
          version: 1,
          data: { owner: { first: 'Ada', last: 'Lovelace' }, currency: 'EUR' },
        });
      });

      test('an older version without an upcaster, a newer version, or an undeclared type is an UnreadableEventError', async () => {
        const decider = name();
        const old = createEventStore(db, v1(decider));
        await old.register();
        const id = newStream();
        await old.append(id, [{ type: 'Opened', data: { owner: 'Ada' } }], { expectedLastEventId: null });
        const noUpcaster = createEventStore(
          db,
          defineEvents(decider, { Opened: event<{ owner: string }>({ version: 2 }) }),
        );
        expect(await noUpcaster.load(id).catch((e) => e)).toBeInstanceOf(UnreadableEventError);
        const older = defineEvents(decider, { Opened: event<{ owner: string }>({ version: 1 }) });
        const newer = createEventStore(
          db,
          defineEvents(decider, {
            Opened: event<{ owner: string }>({ version: 2, upcast: { 1: (d) => d } }),
          }),
        );
        await newer.register();
        await newer.append(id, [{ type: 'Opened', data: { owner: 'Bob' } }], {
          expectedLastEventId: (await newer.loadLast(id))?.eventId ?? null,
        });
        const error = await createEventStore(db, older)
          .load(id)
          .catch((e) => e);
        expect(error).toBeInstanceOf(UnreadableEventError);
        expect(error.message).toContain('knows versions up to 1');
        const other = createEventStore(db, defineEvents(decider, { Closed: event<object>() }));
        expect(await other.load(id).catch((e) => e)).toBeInstanceOf(UnreadableEventError);
      });

      test('a stored payload that no longer matches the schema is an UnreadableEventError', async () => {
        const decider = name();
        const loose = createEventStore(db, defineEvents(decider, { Noted: event<{ text: unknown }>() }));
        await loose.register();
        const id = newStream();
        await loose.append(id, [{ type: 'Noted', data: { text: 7 } }], { expectedLastEventId: null });
        const strict = createEventStore(
          db,
          defineEvents(decider, { Noted: event({ schema: type({ text: 'string' }) }) }),
        );
        expect(await strict.load(id).catch((e) => e)).toBeInstanceOf(UnreadableEventError);
      });
    });

    describe('the SQL functions, one typed wrapper each', () => {
      test('registerDeciderEvent, appendEvent, appendEvents, getEvents, getLastEvent', async () => {
        const decider = `Raw-${randomUUID()}`;
        expect(
          await registerDeciderEvent(db, { decider, event: 'Happened', description: 'it happened' }),
        ).toEqual([{ decider, event: 'Happened', eventVersion: 1, description: 'it happened' }]);
        const deciderId = newStream();
        const [first] = await appendEvent(db, {
          event: 'Happened',
          eventId: randomUUID(),
          decider,
          deciderId,
          data: '{"n":1}',
          commandId: randomUUID(),
          previousId: null,
        });
        expect(first).toMatchObject({ event: 'Happened', data: { n: 1 }, previousId: null, final: false });
        expect(typeof first?.offset).toBe('number');
        expect(first?.createdAt).toBeInstanceOf(Date);
        const more = await appendEvents(db, {
          decider,
          deciderId,
          previousId: first?.eventId ?? null,
          commandId: randomUUID(),
          events: [
            { event: 'Happened', eventId: randomUUID(), data: { n: 2 }, version: 1, final: false },
            { event: 'Happened', eventId: randomUUID(), data: 'a string payload', version: 1, final: true },
          ],
        });
        expect(more.map((e) => [e.data, e.final])).toEqual([
          [{ n: 2 }, false],
          ['a string payload', true],
        ]);
        expect(await getEvents(db, deciderId)).toEqual([first, ...more]);
        expect(await getEvents(db, deciderId, decider)).toEqual([first, ...more]);
        expect(await getLastEvent(db, deciderId, decider)).toEqual(more[1]);
        const conflict = await appendEvent(db, {
          event: 'Happened',
          eventId: randomUUID(),
          decider,
          deciderId,
          data: '{}',
          commandId: randomUUID(),
          previousId: null,
        }).catch((e) => e);
        expect(conflict).toBeInstanceOf(StreamClosedError);
      });

      test('their rows decode to what a Drizzle select of the same rows gives: every column, nulls included', async () => {
        const id = newStream();
        await store.append(id, [created], { expectedLastEventId: null });
        await store.append(id, [added, placed], {
          expectedLastEventId: (await store.loadLast(id))?.eventId ?? null,
          metadata: { correlationId: 'c-1', headers: { tenant: 't' } },
        });
        const selected = await db
          .select()
          .from(events)
          .where(eq(events.deciderId, id))
          .orderBy(events.offset);
        expect(selected).toHaveLength(3);
        expect(await getEvents(db, id)).toEqual(selected);
        // Typed as Drizzle types them: a first event's null previous_id and metadata, numbers, Dates, xid8 as text.
        expect(selected[0]).toMatchObject({
          previousId: null,
          metadata: null,
          eventVersion: 1,
          final: false,
        });
        expect(typeof selected[0]?.offset).toBe('number');
        expect(selected[0]?.createdAt).toBeInstanceOf(Date);
        expect(typeof selected[0]?.transactionId).toBe('string');
      });
    });

    describe('queries', () => {
      test("events by stream, by type, by time range, by offset range; streams of a decider; a view's progress", async () => {
        const decider = `Query-${randomUUID()}`;
        const queried = createEventStore(
          db,
          defineEvents(decider, { A: event<object>(), B: event<object>() }),
        );
        await queried.register();
        const view = `view-${randomUUID()}`;
        await db.execute(sql`SELECT * FROM register_view(${view})`);
        const [s1, s2] = [newStream(), newStream()];
        const a = await queried.append(
          s1,
          [
            { type: 'A', data: {} },
            { type: 'B', data: {} },
          ],
          { expectedLastEventId: null },
        );
        const b = await queried.append(s2, [{ type: 'B', data: {} }], { expectedLastEventId: null });
        const ids = (rows: { eventId: string }[]) => rows.map((row) => row.eventId);
        expect(ids(await eventsOfStream(db, s1))).toEqual(ids(a));
        expect(ids(await eventsOfType(db, decider, 'B'))).toEqual([a[1]?.eventId, b[0]?.eventId]);
        const from = a[0]?.createdAt ?? new Date();
        expect(
          ids(await eventsBetween(db, from, new Date(Date.now() + 60_000))).filter((id) =>
            ids([...a, ...b]).includes(id),
          ),
        ).toEqual(ids([...a, ...b]));
        expect(ids(await eventsInOffsetRange(db, (a[0]?.offset ?? 0) - 1, a[1]?.offset ?? 0))).toEqual(
          ids(a),
        );
        expect(await streamsOfDecider(db, decider)).toEqual(
          [
            { deciderId: s1, events: 2, firstOffset: a[0]?.offset, lastOffset: a[1]?.offset, closed: false },
            { deciderId: s2, events: 1, firstOffset: b[0]?.offset, lastOffset: b[0]?.offset, closed: false },
          ].sort((x, y) => x.deciderId.localeCompare(y.deciderId)),
        );
        // Registered now, the view reads only what is appended after: no lock row before a consumer asks (the three
        // events are behind it, past its frontier); advance_view then creates the rows of the two new streams only.
        const [before] = await viewProgress(db, view);
        expect(before).toMatchObject({
          view,
          streams: 0,
          pendingStreams: 0,
          eventsBehind: 3,
          headOffset: null,
        });
        await db.execute(sql`SELECT advance_view(${view})`);
        const [progress] = await viewProgress(db, view);
        expect(progress).toMatchObject({
          view,
          streams: 2,
          pendingStreams: 2,
          leasedStreams: 0,
          eventsBehind: 3,
          closedStreams: 0,
          lowestPosition: 0,
          headOffset: b[0]?.offset,
        });
      });

      test("a view's progress is view_status(): a stream stopped at a parked event is stopped, not leased", async () => {
        const decider = `Progress-${randomUUID()}`;
        const store = createEventStore(db, defineEvents(decider, { A: event<object>() }));
        await store.register();
        const view = `view-${randomUUID()}`;
        await db.execute(sql`SELECT * FROM register_view(${view})`);
        const [stopped, leased] = [newStream(), newStream()];
        const [poison] = await store.append(stopped, [{ type: 'A', data: {} }], {
          expectedLastEventId: null,
        });
        await store.append(leased, [{ type: 'A', data: {} }], { expectedLastEventId: null });
        const rows = (await db.execute(
          sql`SELECT decider_id, lease_id FROM lease_events(${view}, 10, 1, 300)`,
        )) as unknown as
          | { decider_id: string; lease_id: string }[]
          | { rows: { decider_id: string; lease_id: string }[] };
        const leases = Array.isArray(rows) ? rows : rows.rows;
        const lease = leases.find((row) => row.decider_id === stopped)?.lease_id;
        await db.execute(
          sql`SELECT fail_event(${view}, ${stopped}, ${lease}::uuid, ${poison?.offset}::bigint, 'boom', 0, 1, true)`,
        );
        const statusRows = (await db.execute(
          sql`SELECT streams, pending_streams, leased_streams, stopped_streams, parked_events FROM view_status() WHERE view = ${view}`,
        )) as unknown as Record<string, unknown>[] | { rows: Record<string, unknown>[] };
        const [status] = Array.isArray(statusRows) ? statusRows : statusRows.rows;
        const [progress] = await viewProgress(db, view);
        expect(progress).toMatchObject({
          view,
          streams: Number(status?.streams),
          pendingStreams: 2,
          leasedStreams: 1,
          stoppedStreams: 1,
          parkedEvents: 1,
        });
        expect(progress?.leasedStreams).toBe(Number(status?.leased_streams));
        expect(progress?.stoppedStreams).toBe(Number(status?.stopped_streams));
        expect(progress?.oldestUnackedAt).toBeInstanceOf(Date);
      });
    });
  });
}
