/**
 * @fstore/store under @fstore/schema's optional least-privilege script (sql/least-privilege.sql): everything the
 * typed store does works as a login user of the application role, and its errors are still typed; a user of the
 * read-only role loads but cannot write. The SQL-level catalogue of what each role may do is in @fstore/schema
 * (src/least-privilege.test.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createTestDatabase, withDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  databaseError,
  OptimisticConcurrencyError,
  StreamClosedError,
  UnknownEventTypeError,
} from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, event } from './events.js';
import { appendEvent, appendEvents, getEvents, getLastEvent, registerDeciderEvent } from './functions.js';
import { eventsOfStream, streamsOfDecider } from './queries.js';
import { orderEvents } from './test-support/orders.js';

const schemaPackage = dirname(createRequire(import.meta.url).resolve('@fstore/schema/package.json'));
const script = readFileSync(join(schemaPackage, 'sql', 'least-privilege.sql'), 'utf8');

const suffix = randomBytes(4).toString('hex');
const password = `pw-${suffix}`;
const roles = { app: `fstore_app_${suffix}`, reader: `fstore_reader_${suffix}` };
const users = { app: `app_user_${suffix}`, reader: `reader_user_${suffix}` };

const database = await createTestDatabase();
const admin = postgres(withDatabase(database.url, 'postgres'), { max: 1, onnotice: () => {} });

beforeAll(async () => {
  await database.sql.begin(async (tx) => {
    await tx`SELECT set_config('fstore.app_role', ${roles.app}, true), set_config('fstore.reader_role', ${roles.reader}, true)`;
    await tx.unsafe(script);
  });
  await database.sql.unsafe(`CREATE ROLE "${users.app}" LOGIN PASSWORD '${password}' IN ROLE "${roles.app}"`);
  await database.sql.unsafe(
    `CREATE ROLE "${users.reader}" LOGIN PASSWORD '${password}' IN ROLE "${roles.reader}"`,
  );
});

afterAll(async () => {
  await database.drop();
  for (const role of [users.app, users.reader, roles.app, roles.reader]) {
    await admin.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  }
  await admin.end();
});

const connectAs = (user: string) =>
  database.connect({ user, pass: password, max: 2 } as postgres.Options<Record<string, never>>);

describe('the typed store as a user of the application role', () => {
  const appSql = connectAs(users.app);
  const db = drizzle(appSql);
  const store = createEventStore(db, orderEvents);

  test('is really that user, without any write right on the tables', async () => {
    const [row] = await appSql`
      SELECT current_user AS me, has_table_privilege('events', 'INSERT') AS can_insert,
             has_table_privilege('events', 'SELECT') AS can_select`;
    expect(row).toEqual({ me: users.app, can_insert: false, can_select: true });
  });

  test('registers, appends, loads, iterates and reads the last event', async () => {
    expect(await store.register()).toHaveLength(Object.keys(orderEvents.definitions).length);
    const id = `order-${randomUUID()}`;
    const created = await store.append(
      id,
      [{ type: 'OrderCreated', data: { customer: 'ada', items: [{ sku: 'tea', quantity: 2 }] } }],
      { expectedLastEventId: null },
    );
    await store.append(
      id,
      [
        { type: 'ItemAdded', data: { sku: 'cake', quantity: 1 } },
        { type: 'NoteWritten', data: { text: 'no sugar' } },
      ],
      { expectedLastEventId: created[0]?.eventId ?? null },
    );
    const loaded = await store.load(id);
    expect(loaded.map((e) => e.type)).toEqual(['OrderCreated', 'ItemAdded', 'NoteWritten']);
    expect((await store.loadLast(id))?.type).toBe('NoteWritten');
    const paged = createEventStore(db, orderEvents, { pageSize: 1 });
    const iterated = [];
    for await (const e of paged.iterate(id, { afterOffset: loaded[0]?.offset ?? 0 })) iterated.push(e.type);
    expect(iterated).toEqual(['ItemAdded', 'NoteWritten']);
    expect(await eventsOfStream(db, id)).toHaveLength(3);
    expect((await streamsOfDecider(db, 'Order')).some((s) => s.deciderId === id)).toBe(true);
  });

  test('the function wrappers work: registerDeciderEvent, appendEvent, appendEvents, getEvents, getLastEvent', async () => {
    const decider = `decider-${randomUUID()}`;
    await registerDeciderEvent(db, { decider, event: 'e', description: 'an event' });
    const id = `stream-${randomUUID()}`;
    const [first] = await appendEvent(db, {
      event: 'e',
      eventId: randomUUID(),
      decider,
      deciderId: id,
      data: '{"n": 1}',
      commandId: randomUUID(),
      previousId: null,
    });
    await appendEvents(db, {
      decider,
      deciderId: id,
      previousId: first?.eventId ?? null,
      commandId: randomUUID(),
      events: [{ event: 'e', eventId: randomUUID(), data: { n: 2 }, version: 1, final: false }],
    });
    expect(await getEvents(db, id)).toHaveLength(2);
    expect((await getLastEvent(db, id, decider))?.data).toEqual({ n: 2 });
  });

  test('errors raised inside the SECURITY DEFINER functions are still typed: conflict, closed stream, unknown type', async () => {
    const id = `order-${randomUUID()}`;
    const [created] = await store.append(
      id,
      [{ type: 'OrderCreated', data: { customer: 'bo', items: [] } }],
      {
        expectedLastEventId: null,
      },
    );
    await expect(
      store.append(id, [{ type: 'NoteWritten', data: { text: 'late' } }], { expectedLastEventId: null }),
    ).rejects.toBeInstanceOf(OptimisticConcurrencyError);
    await store.append(id, [{ type: 'OrderCancelled', data: { reason: 'no' } }], {
      expectedLastEventId: created?.eventId ?? null,
    });
    await expect(
      store.append(id, [{ type: 'NoteWritten', data: { text: 'after' } }], {
        expectedLastEventId: (await store.loadLast(id))?.eventId ?? null,
      }),
    ).rejects.toBeInstanceOf(StreamClosedError);
    const unregistered = createEventStore(db, defineEvents(`Never-${randomUUID()}`, { Happened: event() }));
    await expect(
      unregistered.append(`x-${randomUUID()}`, [{ type: 'Happened', data: {} }], {
        expectedLastEventId: null,
      }),
    ).rejects.toBeInstanceOf(UnknownEventTypeError);
  });
});

describe('the typed store as a user of the read-only role', () => {
  const readerSql = connectAs(users.reader);
  const db = drizzle(readerSql);
  const store = createEventStore(db, orderEvents);
  const writer = createEventStore(drizzle(connectAs(users.app)), orderEvents);

  test('loads, iterates and reads through get_events and get_last_event', async () => {
    await writer.register();
    const id = `order-${randomUUID()}`;
    await writer.append(id, [{ type: 'OrderCreated', data: { customer: 'cy', items: [] } }], {
      expectedLastEventId: null,
    });
    expect((await store.load(id)).map((e) => e.type)).toEqual(['OrderCreated']);
    expect(await getEvents(db, id)).toHaveLength(1);
    expect((await getLastEvent(db, id, 'Order'))?.event).toBe('OrderCreated');
  });

  test('cannot register or append: permission denied (42501), passed through untyped, nothing written', async () => {
    const id = `order-${randomUUID()}`;
    const appendFailure = await store
      .append(id, [{ type: 'OrderCreated', data: { customer: 'di', items: [] } }], {
        expectedLastEventId: null,
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(databaseError(appendFailure)?.code).toBe('42501');
    const registerFailure = await store.register().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(databaseError(registerFailure)?.code).toBe('42501');
    expect(await store.load(id)).toEqual([]);
    expect(await readerSql`SELECT 1 AS ok`).toEqual([{ ok: 1 }]);
  });
});
