/**
 * The names deprecated in 0.2 (removed in 0.3) still work: `Decider` and `NewDecider`, the rows of `deciders`, are
 * `DeciderEventType` and `NewDeciderEventType` (`Decider` is @fstore/store's decide/evolve interface).
 */
import { createTestDatabase } from '@fstore/test-harness';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, expect, expectTypeOf, test } from 'vitest';
import {
  type Decider,
  type DeciderEventType,
  deciders,
  type NewDecider,
  type NewDeciderEventType,
} from './index.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 1 }));

test('Decider and NewDecider are DeciderEventType and NewDeciderEventType', async () => {
  expectTypeOf<Decider>().toEqualTypeOf<DeciderEventType>();
  expectTypeOf<NewDecider>().toEqualTypeOf<NewDeciderEventType>();

  const registered: NewDecider = { decider: 'Order', event: 'OrderCreated', description: 'an order' };
  await db.insert(deciders).values(registered);
  const rows: Decider[] = await db.select().from(deciders).where(eq(deciders.decider, 'Order'));
  const same: DeciderEventType[] = rows;
  expect(same).toEqual([
    { decider: 'Order', event: 'OrderCreated', eventVersion: 1, description: 'an order' },
  ]);
});
