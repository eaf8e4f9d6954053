/**
 * Personal data and forgetting it (crypto-shredding): declared personal fields reach SQL encrypted with their
 * subject's key and load decrypted; forgetting the subject (the owner's forget_subject) deletes its keys, after
 * which those fields load as the placeholder while the events, their order and their chains stay; no table holds
 * the plaintext any more; rotation, a second subject, an unknown key, and events without personal fields. On a real
 * PostgreSQL, as its owner (forget_subject is granted to no other role).
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase, tablesHolding } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCommandHandler } from './command-handler.js';
import { UnknownSubjectKeyError, ValidationError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, event } from './events.js';
import { forgetSubject, getSnapshot, rotateSubjectKey } from './functions.js';
import { forgotten, isForgotten } from './personal-data.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));

type SignUp = { customerId: string; email: string; name: string; plan: string };
const customers = defineEvents('PersonalCustomer', {
  SignedUp: event<SignUp, 'email' | 'name'>({
    personal: { subject: (data) => data.customerId, fields: ['email', 'name'] },
  }),
  PlanChanged: event<{ plan: string }>(),
});
const store = createEventStore(db, customers);
beforeAll(() => store.register());

/** A customer's stream: signed up with personal data, then a plan change without any. */
async function signUp(customerId = `customer-${randomUUID()}`) {
  const email = `${randomUUID()}@example.com`;
  const name = `Ada ${randomUUID()}`;
  const stored = await store.append(
    customerId,
    [
      { type: 'SignedUp', data: { customerId, email, name, plan: 'free' } },
      { type: 'PlanChanged', data: { plan: 'pro' } },
    ],
    { expectedLastEventId: null },
  );
  return { customerId, email, name, stored };
}

describe('declared personal fields', () => {
  test('reach SQL encrypted, and load decrypted', async () => {
    const { customerId, email, name, stored } = await signUp();
    expect(stored[0]?.data).toEqual({ customerId, email, name, plan: 'free' });
    const [row] = await database.sql<{ data: Record<string, { $fstore?: string }> }[]>`
      SELECT data FROM events WHERE event_id = ${stored[0]?.eventId ?? ''}`;
    expect(row?.data.email?.$fstore).toBe('encrypted');
    expect(row?.data.name?.$fstore).toBe('encrypted');
    expect(row?.data.plan).toBe('free');
    expect(await tablesHolding(database.sql, email)).toEqual([]);
    expect((await store.load(customerId)).map((e) => e.data)).toEqual([
      { customerId, email, name, plan: 'free' },
      { plan: 'pro' },
    ]);
  });

  test('events without personal fields are stored as they are, and draw no key', async () => {
    const before = await database.sql`SELECT count(*)::int AS n FROM subject_keys`;
    const id = `customer-${randomUUID()}`;
    await store.append(id, [{ type: 'PlanChanged', data: { plan: 'pro' } }], { expectedLastEventId: null });
    const [row] = await database.sql`SELECT data FROM events WHERE decider_id = ${id}`;
    expect(row?.data).toEqual({ plan: 'pro' });
    expect(await database.sql`SELECT count(*)::int AS n FROM subject_keys`).toEqual(before);
  });

  test('the placeholder cannot be written as personal data', async () => {
    const customerId = `customer-${randomUUID()}`;
    const refused = await store
      .append(
        customerId,
        [{ type: 'SignedUp', data: { customerId, email: forgotten, name: 'x', plan: 'free' } }],
        {
          expectedLastEventId: null,
        },
      )
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ValidationError);
    expect(await store.load(customerId)).toEqual([]);
  });
});

describe('forgetting a subject', () => {
  test('its fields load as the placeholder; the events, their order and chain stay; no table holds the plaintext', async () => {
    const { customerId, email, name, stored } = await signUp();
    const other = await signUp();
    // A snapshot of the stream's state: a cache that holds the data decrypted.
    const handle = createCommandHandler(
      store,
      {
        initialState: { email: '' as unknown },
        decide: () => [{ type: 'PlanChanged' as const, data: { plan: 'team' } }],
        evolve: (state, e) => (e.type === 'SignedUp' ? { email: e.data.email } : state),
      },
      { snapshots: { every: 1, version: 'v1' } },
    );
    await handle(customerId, {});
    expect(
      (await getSnapshot(db, { decider: 'PersonalCustomer', deciderId: customerId, version: 'v1' }))?.state,
    ).toEqual({
      email,
    });

    expect(await forgetSubject(db, customerId)).toBe(1);

    const loaded = await store.load(customerId);
    expect(loaded.map((e) => e.eventId)).toEqual([...stored.map((e) => e.eventId), expect.any(String)]);
    expect(loaded.map((e) => e.previousId)).toEqual([null, stored[0]?.eventId, stored[1]?.eventId]);
    const signedUp = loaded[0];
    if (signedUp?.type !== 'SignedUp') throw new Error('the stream does not start with its sign-up');
    expect(signedUp.data).toEqual({ customerId, email: forgotten, name: forgotten, plan: 'free' });
    expect(isForgotten(signedUp.data.email)).toBe(true);
    // The command handler folds the placeholder too.
    expect((await handle(customerId, {})).state).toEqual({ email: forgotten });
    for (const plaintext of [email, name]) expect(await tablesHolding(database.sql, plaintext)).toEqual([]);
    // The other customer is untouched.
    expect((await store.load(other.customerId))[0]?.data).toMatchObject({ email: other.email });
    // Who forgot whom, and when.
    const [audit] = await database.sql<{ forgotten_by: string; keys: number }[]>`
      SELECT forgotten_by, cardinality(key_ids) AS keys FROM subject_erasures WHERE subject = ${customerId}`;
    expect(audit).toEqual({ forgotten_by: (await database.sql`SELECT session_user AS u`)[0]?.u, keys: 1 });
  });

  test('a rotated key encrypts from then on; both keys decrypt until the subject is forgotten', async () => {
    const { customerId, email } = await signUp();
    await rotateSubjectKey(db, customerId);
    const [last] = (await store.load(customerId)).slice(-1);
    const second = await store.append(
      customerId,
      [{ type: 'SignedUp', data: { customerId, email: 'new@example.com', name: 'Ada', plan: 'pro' } }],
      { expectedLastEventId: last?.eventId ?? null },
    );
    const keyIds = await database.sql<{ key: string }[]>`
      SELECT data -> 'email' ->> 'key' AS key FROM events WHERE decider_id = ${customerId} AND event = 'SignedUp'
      ORDER BY "offset"`;
    expect(new Set(keyIds.map((row) => row.key)).size).toBe(2);
    const emails = async () =>
      (await store.load(customerId)).flatMap((e) => (e.type === 'SignedUp' ? [e.data.email] : []));
    expect(await emails()).toEqual([email, 'new@example.com']);
    expect(second[0]?.data).toMatchObject({ email: 'new@example.com' });
    expect(await forgetSubject(db, customerId)).toBe(2);
    expect(await emails()).toEqual([forgotten, forgotten]);
  });

  test('new data about a forgotten subject gets a new key, and reads', async () => {
    const { customerId } = await signUp();
    await forgetSubject(db, customerId);
    const [last] = (await store.load(customerId)).slice(-1);
    const [again] = await store.append(
      customerId,
      [{ type: 'SignedUp', data: { customerId, email: 'back@example.com', name: 'Ada', plan: 'free' } }],
      { expectedLastEventId: last?.eventId ?? null },
    );
    expect(again?.data).toMatchObject({ email: 'back@example.com' });
    expect((await store.load(customerId)).at(-1)?.data).toMatchObject({ email: 'back@example.com' });
  });

  test('a key that is neither there nor forgotten is a typed error', async () => {
    const { customerId, stored } = await signUp();
    // Deleted by hand, without forget_subject: nothing says the subject was forgotten.
    await database.sql`DELETE FROM subject_keys WHERE subject = ${customerId}`;
    const failure = await store.load(customerId).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UnknownSubjectKeyError);
    expect(failure).toMatchObject({ eventId: stored[0]?.eventId });
    expect(['email', 'name']).toContain((failure as UnknownSubjectKeyError).field);
  });
});
