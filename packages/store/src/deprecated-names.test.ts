/**
 * The names deprecated in 0.2 (removed in 0.3) still work, and are the very functions and class they became:
 * the helpers of @fstore/store/internal.
 */
import { events } from '@fstore/schema';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, expect, expectTypeOf, test } from 'vitest';
import { ValidationError } from './errors.js';
import * as store from './index.js';
import * as internal from './internal.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 1 }));

test('each deprecated name of @fstore/store is its @fstore/store/internal helper', () => {
  expect(store.queryRows).toBe(internal.queryRows);
  expect(store.rowDecoder).toBe(internal.rowDecoder);
  expect(store.decodeEventRow).toBe(internal.decodeEventRow);
  expect(store.databaseError).toBe(internal.databaseError);
  expect(store.Issues).toBe(internal.Issues);
  expect(store.limits).toBe(internal.limits);
  expectTypeOf<store.Issues>().toEqualTypeOf<internal.Issues>();
});

test('the deprecated names still work', async () => {
  expect(await store.queryRows(db, sql`SELECT 1 AS one`)).toEqual([{ one: 1 }]);
  const row = {
    event: 'Created',
    event_id: '00000000-0000-4000-8000-000000000001',
    decider: 'Order',
    decider_id: 'order-1',
    data: { a: 1 },
    command_id: '00000000-0000-4000-8000-000000000002',
    previous_id: null,
    final: false,
    created_at: new Date(0),
    offset: '7',
    event_version: '1',
  };
  expect(store.decodeEventRow(row)).toMatchObject({ eventId: row.event_id, offset: 7, eventVersion: 1 });
  expect(store.rowDecoder(events)(row)).toEqual(internal.decodeEventRow(row));

  const issues = new store.Issues();
  issues.text('name', 'x'.repeat(store.limits.maxNameLength + 1), store.limits.maxNameLength);
  expect(() => issues.throwIfAny()).toThrow(ValidationError);

  const failure = await store.queryRows(db, sql`SELECT 1 / 0`).catch((error: unknown) => error);
  expect(store.databaseError(failure)?.code).toBe('22012');
});
