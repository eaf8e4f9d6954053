/**
 * Forgetting a subject, from the read models' side: projection handlers get its personal fields decrypted, and
 * after forget_subject and a rebuild they get the placeholder; then no table of the database holds the subject's
 * plaintext (every table scanned, read models included). On a real PostgreSQL, as its owner.
 */
import { randomUUID } from 'node:crypto';
import {
  createEventStore,
  type Database,
  defineEvents,
  event,
  forgetSubject,
  forgotten,
  isForgotten,
} from '@fstore/store';
import { createTestDatabase, tablesHolding } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createProjection } from './projection.js';
import { waitForView } from './read-your-writes.js';
import { rebuildProjection } from './rebuild.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 8 }));

type SignUp = { customerId: string; email: string; plan: string };
const customers = defineEvents('ErasedCustomer', {
  SignedUp: event<SignUp, 'email'>({ personal: { subject: (data) => data.customerId, fields: ['email'] } }),
});
const store = createEventStore(db, customers);
beforeAll(async () => {
  await store.register();
  await db.execute(
    sql`CREATE TABLE customer_list (id text PRIMARY KEY, email jsonb NOT NULL, plan text NOT NULL)`,
  );
});

test('a read model rebuilt after forgetting holds the placeholder, and no table holds the plaintext', async () => {
  const view = `customer-list-${randomUUID()}`;
  const projection = createProjection({
    db,
    view,
    events: [customers],
    pollIntervalMs: 20,
    async handle(e, tx) {
      // The placeholder is plain JSON: a read model may keep it as it is.
      await tx.execute(sql`INSERT INTO customer_list VALUES (${e.data.customerId}, ${JSON.stringify(e.data.email)}::jsonb,
        ${e.data.plan}) ON CONFLICT (id) DO UPDATE SET email = excluded.email, plan = excluded.plan`);
    },
  });
  const ada = { customerId: `customer-${randomUUID()}`, email: `${randomUUID()}@example.com`, plan: 'pro' };
  const bob = { customerId: `customer-${randomUUID()}`, email: `${randomUUID()}@example.com`, plan: 'free' };
  let last = 0;
  for (const customer of [ada, bob]) {
    const [stored] = await store.append(customer.customerId, [{ type: 'SignedUp', data: customer }], {
      expectedLastEventId: null,
    });
    last = stored?.offset ?? 0;
  }
  await projection.start();
  try {
    await waitForView(db, view, { deciderId: bob.customerId, offset: last }, { timeoutMs: 60_000 });
    const emails = async () =>
      Object.fromEntries(
        (await database.sql<{ id: string; email: unknown }[]>`SELECT id, email FROM customer_list`).map(
          (row) => [row.id, row.email],
        ),
      );
    expect(await emails()).toEqual({ [ada.customerId]: ada.email, [bob.customerId]: bob.email });
    // Before the rebuild the read model still holds what it projected: forgetting alone cannot reach it.
    await forgetSubject(db, ada.customerId);
    expect(await tablesHolding(database.sql, ada.email)).toEqual(['public.customer_list']);

    await rebuildProjection(db, {
      view,
      deciders: ['ErasedCustomer'],
      reset: async (tx) => {
        await tx.execute(sql`DELETE FROM customer_list`);
      },
    });
    await waitForView(db, view, { deciderId: bob.customerId, offset: last }, { timeoutMs: 60_000 });
    await expect
      .poll(emails, { timeout: 60_000 })
      .toEqual({ [ada.customerId]: forgotten, [bob.customerId]: bob.email });
    expect(isForgotten((await emails())[ada.customerId])).toBe(true);
    expect(await tablesHolding(database.sql, ada.email)).toEqual([]);
    expect(await tablesHolding(database.sql, bob.email)).toEqual(['public.customer_list']);
  } finally {
    await projection.stop();
  }
});
