/**
 * The bad-input catalogue at the TypeScript layer: store.append, load, iterate and loadLast, the store's options,
 * and the function wrappers. Each entry fails with a typed error that names the field (ValidationError,
 * PayloadTooLargeError, UnknownEventTypeError, …), writes nothing, and leaves the connection usable; where the
 * store checks input itself, not a single statement reaches the database. The wrappers (functions.ts) are thin on
 * purpose: what they pass through, the SQL refuses, with the SQLSTATE that @fstore/schema's bad-input test lists.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  databaseError,
  OptimisticConcurrencyError,
  PayloadTooLargeError,
  UnknownEventTypeError,
  ValidationError,
} from './errors.js';
import { createEventStore, type EventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';
import { appendEvent, appendEvents, getEvents, registerDeciderEvent } from './functions.js';
import { orderEvents } from './test-support/orders.js';

const database = await createTestDatabase();
afterAll(() => database.drop());

let statements = 0;
/** One connection: every failure must leave it usable. */
const client = database.connect({ max: 1 });
const db = drizzle(client, { logger: { logQuery: () => void statements++ } });
const store = createEventStore(db, orderEvents);

type OrderEvent = EventOf<typeof orderEvents>;
const created: OrderEvent = {
  type: 'OrderCreated',
  data: { customer: 'Ada', items: [{ sku: 'tea', quantity: 2 }] },
};
const placed: OrderEvent = { type: 'OrderPlaced', data: { placedAt: '2026-11-26T10:00:00Z' } };
const newStream = () => `order-${randomUUID()}`;

beforeAll(async () => {
  await store.register();
});

/** Everything events and deciders hold, as digests (read on another connection). */
async function contents() {
  const [row] = await database.sql`
    SELECT (SELECT count(*)::int FROM events) AS events, (SELECT count(*)::int FROM deciders) AS deciders,
           (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t."offset"), '')) FROM events t) AS events_md5,
           (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.decider, t.event, t.event_version), ''))
            FROM deciders t) AS deciders_md5`;
  return row;
}

async function usable() {
  expect(await db.execute(sql`SELECT 1 AS ok`)).toEqual([{ ok: 1 }]);
}

/**
 * Runs `fn`, expects it to fail with `ErrorClass`, nothing written, the connection usable; with `beforeSql`, also
 * that no statement was sent. Returns the error.
 */
async function refused<T extends Error>(
  fn: () => Promise<unknown>,
  ErrorClass: abstract new (...args: never[]) => T,
  options: { beforeSql: boolean },
): Promise<T> {
  const before = await contents();
  const sent = statements;
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ErrorClass);
  if (options.beforeSql) expect(statements, 'no statement sent').toBe(sent);
  expect(await contents(), 'nothing written').toEqual(before);
  await usable();
  return error as T;
}

/** Like `refused`, for errors that pass through from the database untyped: returns their SQLSTATE. */
async function refusedBySql(fn: () => Promise<unknown>): Promise<string | undefined> {
  const before = await contents();
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'it failed').toBeDefined();
  expect(await contents(), 'nothing written').toEqual(before);
  await usable();
  return databaseError(error)?.code;
}

const append = (deciderId: unknown, events: unknown, options: unknown = { expectedLastEventId: null }) =>
  store.append(
    deciderId as string,
    events as OrderEvent[],
    options as { expectedLastEventId: string | null; commandId?: string },
  );

describe('store.append refuses bad input before any SQL, naming the field', () => {
  const cyclic: Record<string, unknown> = { placedAt: 'now' };
  cyclic.self = cyclic;
  const sameId = randomUUID();
  const cases: [string, () => Promise<unknown>, string][] = [
    ['a null stream id', () => append(null, [created]), 'deciderId'],
    ['an undefined stream id', () => append(undefined, [created]), 'deciderId'],
    ['a number as stream id', () => append(42, [created]), 'deciderId'],
    ['an object as stream id', () => append({ id: 1 }, [created]), 'deciderId'],
    ['an empty stream id', () => append('', [created]), 'deciderId'],
    ['a stream id of 513 characters', () => append('x'.repeat(513), [created]), 'deciderId'],
    ['a stream id with NUL', () => append('nul\u0000id', [created]), 'deciderId'],
    [
      'expectedLastEventId that is no UUID',
      () => append(newStream(), [created], { expectedLastEventId: 'abc' }),
      'expectedLastEventId',
    ],
    [
      'expectedLastEventId missing (undefined)',
      () => append(newStream(), [created], {}),
      'expectedLastEventId',
    ],
    [
      'expectedLastEventId a number',
      () => append(newStream(), [created], { expectedLastEventId: 7 }),
      'expectedLastEventId',
    ],
    [
      'a commandId that is no UUID',
      () =>
        append(newStream(), [created], { expectedLastEventId: null, commandId: "'; DROP TABLE events; --" }),
      'commandId',
    ],
    ['no events', () => append(newStream(), []), 'events'],
    ['events that are not an array', () => append(newStream(), { 0: created }), 'events'],
    ['null events', () => append(newStream(), null), 'events'],
    ['an undeclared type', () => append(newStream(), [{ type: 'OrderShipped', data: {} }]), 'events.0.type'],
    [
      'a type that is an injection attempt',
      () => append(newStream(), [{ type: "x'); DROP TABLE events; --", data: {} }]),
      'events.0.type',
    ],
    [
      "a type from Object's prototype",
      () => append(newStream(), [{ type: 'toString', data: {} }]),
      'events.0.type',
    ],
    [
      'an eventId that is no UUID',
      () => append(newStream(), [{ ...created, eventId: 'x' }]),
      'events.0.eventId',
    ],
    [
      'a payload failing its schema',
      () => append(newStream(), [{ type: 'OrderCreated', data: { customer: '' } }]),
      'events.0.data.customer',
    ],
    [
      'a null payload where the schema wants an object',
      () => append(newStream(), [{ type: 'OrderCreated', data: null }]),
      'events.0.data',
    ],
    [
      'undefined in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: undefined } }]),
      'events.0.data.placedAt',
    ],
    [
      'a BigInt in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: 1n } }]),
      'events.0.data.placedAt',
    ],
    [
      'Infinity in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: Infinity } }]),
      'events.0.data.placedAt',
    ],
    [
      'a cycle in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: cyclic }]),
      'events.0.data.self',
    ],
    [
      'a Map in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: new Map() } }]),
      'events.0.data.placedAt',
    ],
    [
      'a symbol in a payload',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: Symbol('s') } }]),
      'events.0.data.placedAt',
    ],
    [
      'NUL in a payload string',
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: 'a\u0000b' } }]),
      'events.0.data.placedAt',
    ],
    [
      'the same eventId twice',
      () =>
        append(newStream(), [
          { ...created, eventId: sameId },
          { ...placed, eventId: sameId },
        ]),
      'events',
    ],
  ];

  test.each(cases)('%s: ValidationError at %s', async (_, fn, path) => {
    const error = await refused(fn, ValidationError, { beforeSql: true });
    expect(error.issues.map((issue) => issue.path)).toContain(
      path === 'events.0.data' ? 'events.0.data' : path,
    );
  });
});

describe('payloads of 10 MB and more, and the configurable cap', () => {
  const big = (bytes: number) => ({ placedAt: 'x'.repeat(bytes - '{"placedAt":""}'.length) });

  test('a 10 MB payload is refused by the default cap (1 MiB) with PayloadTooLargeError, before any SQL', async () => {
    const error = await refused(
      () => append(newStream(), [{ type: 'OrderPlaced', data: big(10 * 1024 * 1024) }]),
      PayloadTooLargeError,
      { beforeSql: true },
    );
    expect(error).toMatchObject({ type: 'OrderPlaced', bytes: 10 * 1024 * 1024, maxBytes: 1024 * 1024 });
  });

  test('with maxPayloadBytes raised to 32 MB, a 10 MB and a 25 MB payload are stored and load back unchanged', async () => {
    const roomy = createEventStore(db, orderEvents, { maxPayloadBytes: 32 * 1024 * 1024 });
    for (const megabytes of [10, 25]) {
      const id = newStream();
      const data = big(megabytes * 1024 * 1024);
      await roomy.append(id, [{ type: 'OrderPlaced', data }], { expectedLastEventId: null });
      const [loaded] = await roomy.load(id);
      expect(loaded?.data).toEqual(data);
    }
  });

  test('the cap counts UTF-8 bytes of the serialised payload: exactly at the cap passes, one byte over does not', async () => {
    const capped = createEventStore(db, orderEvents, { maxPayloadBytes: 1000 });
    const id = newStream();
    await capped.append(id, [{ type: 'OrderPlaced', data: big(1000) }], { expectedLastEventId: null });
    // 'é' is two bytes in UTF-8: 499 of them and the JSON around them are 1013 bytes but 514 characters.
    const error = await refused(
      () =>
        capped.append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: 'é'.repeat(499) } }], {
          expectedLastEventId: null,
        }),
      PayloadTooLargeError,
      { beforeSql: true },
    );
    expect(error.bytes).toBe(1013);
    await refused(
      () =>
        capped.append(newStream(), [{ type: 'OrderPlaced', data: big(1001) }], { expectedLastEventId: null }),
      PayloadTooLargeError,
      { beforeSql: true },
    );
  });

  test('a cap that is not a positive whole number (NaN, negative, zero) is refused when the store is made', () => {
    // Today NaN turns the cap off (no payload is ever larger than NaN) and zero or less refuses every payload.
    for (const maxPayloadBytes of [Number.NaN, -1, 0, 1.5]) {
      expect(() => createEventStore(db, orderEvents, { maxPayloadBytes })).toThrow(ValidationError);
    }
  });
});

describe('names: quotes, semicolons, injection attempts, unicode', () => {
  const names = [
    `'); DROP TABLE events; --`,
    `"; DELETE FROM deciders; --`,
    `a'b"c;d\\e`,
    `Ünïcödé ✓ ñ ß`,
    `🦀🔥 emoji 👩‍👩‍👧`,
    `עברית right-to-left`,
    `tab\tnewline\n`,
  ];

  test.each(names)(
    '%j as a stream id, decider and event type is stored and loaded back verbatim',
    async (name) => {
      const events = defineEvents(name, { [name]: event<{ name: string }>({ description: name }) });
      const named = createEventStore(db, events) as unknown as EventStore<typeof events>;
      await named.register();
      const [stored] = await named.append(name, [{ type: name, data: { name } }] as never, {
        expectedLastEventId: null,
      });
      expect(stored).toMatchObject({ type: name, decider: name, deciderId: name, data: { name } });
      const loaded = await named.load(name);
      expect(loaded.map((e) => [e.type, e.deciderId, e.data])).toEqual([[name, name, { name }]]);
      await usable();
    },
  );

  test('a stream id with a lone surrogate is a ValidationError (UTF-8 would turn it into U+FFFD, merging two ids)', async () => {
    const error = await refused(() => append(`lone-${randomUUID()}-\ud800`, [created]), ValidationError, {
      beforeSql: true,
    });
    expect(error.issues[0]?.path).toBe('deciderId');
  });

  test('a lone surrogate in a payload is a ValidationError naming the field, before any SQL', async () => {
    await refused(
      () => append(newStream(), [{ type: 'OrderPlaced', data: { placedAt: 'broken \ud800 text' } }]),
      ValidationError,
      { beforeSql: true },
    );
  });
});

describe('what only the database knows', () => {
  test('a declared type the database has not registered: UnknownEventTypeError, nothing written', async () => {
    const unregistered = createEventStore(
      db,
      defineEvents(`Never-${randomUUID()}`, { Happened: event<object>() }),
    );
    await refused(
      () => unregistered.append(newStream(), [{ type: 'Happened', data: {} }], { expectedLastEventId: null }),
      UnknownEventTypeError,
      { beforeSql: false },
    );
  });

  test('a version the database has not registered (declared at 2, registered at 1): UnknownEventTypeError', async () => {
    const name = `Versioned-${randomUUID()}`;
    await createEventStore(db, defineEvents(name, { Happened: event<object>() })).register();
    const newer = createEventStore(
      db,
      defineEvents(name, { Happened: event<object>({ version: 2, upcast: { 1: (d: unknown) => d } }) }),
    );
    const error = await refused(
      () => newer.append(newStream(), [{ type: 'Happened', data: {} }], { expectedLastEventId: null }),
      UnknownEventTypeError,
      { beforeSql: false },
    );
    expect(error.types).toEqual([{ type: 'Happened', version: 2 }]);
  });

  test('an expectedLastEventId of another stream: OptimisticConcurrencyError, nothing written', async () => {
    const [other] = await append(newStream(), [created]);
    await refused(
      () => append(newStream(), [created], { expectedLastEventId: other?.eventId }),
      OptimisticConcurrencyError,
      { beforeSql: false },
    );
  });
});

describe('loading refuses bad positions, naming the field', () => {
  const cases: [string, unknown, string][] = [
    ['a negative offset', { afterOffset: -1 }, 'afterOffset'],
    ['a fractional offset', { afterOffset: 1.5 }, 'afterOffset'],
    ['NaN', { afterOffset: Number.NaN }, 'afterOffset'],
    ['an offset beyond 2^53', { afterOffset: 2 ** 60 }, 'afterOffset'],
    ['an afterEventId that is no UUID', { afterEventId: "' OR 1=1 --" }, 'afterEventId'],
    ['an afterEventId of no event', { afterEventId: '00000000-0000-0000-0000-000000000000' }, 'afterEventId'],
  ];

  test.each(cases)('%s: ValidationError at %s', async (_, from, path) => {
    const id = newStream();
    await append(id, [created]);
    const error = await refused(() => store.load(id, from as { afterOffset: number }), ValidationError, {
      beforeSql: path === 'afterOffset' || from === cases[4]?.[1],
    });
    expect(error.issues[0]?.path).toBe(path);
  });

  test('an afterEventId of another stream: ValidationError', async () => {
    const [other] = await append(newStream(), [created]);
    await refused(
      () => store.load(newStream(), { afterEventId: other?.eventId as string }),
      ValidationError,
      {
        beforeSql: false,
      },
    );
  });

  test('a stream id that is not a string (null, a number) is a ValidationError, as in append', async () => {
    await refused(() => store.load(null as unknown as string), ValidationError, { beforeSql: true });
  });

  test('pageSize 0 (or less, or fractional) is refused when the store is made', () => {
    for (const pageSize of [0, -1, 1.5, Number.NaN]) {
      expect(() => createEventStore(db, orderEvents, { pageSize }), String(pageSize)).toThrow(
        ValidationError,
      );
    }
  });

  test('transientRetries below 0, fractional, absurd or NaN is refused when the store is made', () => {
    for (const transientRetries of [-1, 0.5, 101, Number.NaN]) {
      expect(() => createEventStore(db, orderEvents, { transientRetries }), String(transientRetries)).toThrow(
        expect.objectContaining({ issues: [expect.objectContaining({ path: 'transientRetries' })] }),
      );
    }
  });
});

describe('the function wrappers pass input through; the SQL refuses it', () => {
  test('registerDeciderEvent with a null decider: 23502, nothing written', async () => {
    expect(
      await refusedBySql(() => registerDeciderEvent(db, { decider: null as unknown as string, event: 'e' })),
    ).toBe('23502');
  });

  test('appendEvent with an id that is no UUID: 22P02; with malformed JSON: 22P02; with an unregistered type: UnknownEventTypeError', async () => {
    const base = {
      event: 'OrderPlaced',
      eventId: randomUUID(),
      decider: 'Order',
      deciderId: newStream(),
      data: '{}',
      commandId: randomUUID(),
      previousId: null,
    };
    expect(await refusedBySql(() => appendEvent(db, { ...base, eventId: 'nope' }))).toBe('22P02');
    expect(await refusedBySql(() => appendEvent(db, { ...base, data: '{"placedAt": ' }))).toBe('22P02');
    expect(
      await refusedBySql(() => appendEvent(db, { ...base, commandId: "'); DROP TABLE events; --" })),
    ).toBe('22P02');
    await refused(() => appendEvent(db, { ...base, event: 'Unregistered' }), UnknownEventTypeError, {
      beforeSql: false,
    });
  });

  test('appendEvents takes payloads as values: text is stored as a JSON string, not parsed', async () => {
    const deciderId = newStream();
    const [stored] = await appendEvents(db, {
      decider: 'Order',
      deciderId,
      previousId: null,
      commandId: randomUUID(),
      events: [{ event: 'OrderPlaced', eventId: randomUUID(), data: 'not json', version: 1, final: false }],
    });
    expect(stored?.data).toBe('not json');
  });

  test('appendEvents: a payload is one JSON value; text that would close it and open another event is only text', async () => {
    // The wrapper serialises the whole batch itself: a payload cannot end its element and add another (here, an
    // OrderCancelled that would close the stream).
    const deciderId = newStream();
    const injected = `{"placedAt": "now"}},{"event":"OrderCancelled","event_id":"${randomUUID()}","final":true,"data":{"reason":"injected"}`;
    await appendEvents(db, {
      decider: 'Order',
      deciderId,
      previousId: null,
      commandId: randomUUID(),
      events: [{ event: 'OrderPlaced', eventId: randomUUID(), data: injected, version: 1, final: false }],
    });
    expect((await getEvents(db, deciderId)).map((e) => [e.event, e.data, e.final])).toEqual([
      ['OrderPlaced', injected, false],
    ]);
  });

  test('getEvents with a null stream id answers an empty stream (no stream has a null id)', async () => {
    expect(await getEvents(db, null as unknown as string)).toEqual([]);
    await usable();
  });
});
