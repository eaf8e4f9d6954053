/** The README's @fstore/store example, run as it is written, as its own process against a fresh database. */
import { createTestDatabase } from '@fstore/test-harness';
import { runReadmeExample } from '@fstore/test-harness/readme';
import { afterAll, expect, test } from 'vitest';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

test('the README example declares events, handles commands and loads the state', async () => {
  const stdout = await runReadmeExample('store', new URL('..', import.meta.url), {
    DATABASE_URL: database.url,
  });
  const [state, events] = stdout.trim().split('\n');
  expect(state).toBe("{ status: 'placed', items: 2 }");
  expect(events).toMatch(/^\d+ OrderCreated, \d+ ItemAdded, \d+ OrderPlaced$/);
});
