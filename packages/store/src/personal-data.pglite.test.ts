/**
 * Personal data, snapshots and metadata on PGlite, the in-process database of @fstore/testing: bytea comes back as
 * a Uint8Array there, jsonb and uuid[] parameters go through its extended protocol. One session, as its owner.
 */
import { PGlite } from '@electric-sql/pglite';
import { migrate } from '@fstore/schema';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createCommandHandler } from './command-handler.js';
import { createEventStore } from './event-store.js';
import { defineEvents, event } from './events.js';
import { forgetSubject, getSnapshot, rotateSubjectKey } from './functions.js';
import { forgotten } from './personal-data.js';
import { eventsOfCorrelation } from './queries.js';

const pg = new PGlite();
afterAll(() => pg.close());
const db = drizzle(pg);

type SignUp = { customerId: string; email: string; plan: string };
const customers = defineEvents('PgliteCustomer', {
  SignedUp: event<SignUp, 'email'>({ personal: { subject: (data) => data.customerId, fields: ['email'] } }),
});
const store = createEventStore(db, customers);
beforeAll(async () => {
  await migrate(pg);
  await store.register();
});

test('personal fields encrypt and decrypt, rotate, and read as forgotten; snapshots and metadata work too', async () => {
  const handle = createCommandHandler(
    store,
    {
      initialState: [] as unknown[],
      decide: (command: { email: string }) => [
        { type: 'SignedUp' as const, data: { customerId: 'c-1', email: command.email, plan: 'pro' } },
      ],
      evolve: (emails, e) => [...emails, e.data.email],
    },
    { snapshots: { every: 1, version: 'v1' } },
  );
  const first = await handle(
    'c-1',
    { email: 'ada@example.com' },
    { metadata: { correlationId: 'signup-1' } },
  );
  await rotateSubjectKey(db, 'c-1');
  const second = await handle('c-1', { email: 'ada@work.example' });
  expect(second.state).toEqual(['ada@example.com', 'ada@work.example']);
  expect(
    (await getSnapshot(db, { decider: 'PgliteCustomer', deciderId: 'c-1', version: 'v1' }))?.state,
  ).toEqual(['ada@example.com', 'ada@work.example']);
  expect((await eventsOfCorrelation(db, 'signup-1')).map((row) => row.eventId)).toEqual([
    first.events[0]?.eventId,
  ]);

  expect(await forgetSubject(db, 'c-1')).toBe(2);
  expect((await store.load('c-1')).map((e) => e.data.email)).toEqual([forgotten, forgotten]);
  expect((await handle('c-1', { email: 'back@example.com' })).state).toEqual([
    forgotten,
    forgotten,
    'back@example.com',
  ]);
});
