/**
 * The README's @fstore/store example, run as it is written, as its own process against a fresh database. The
 * package's own README (what a registry shows) carries the same example.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { readmeBlocks, runReadmeExample } from '@fstore/test-harness/readme';
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

test("the package README carries the README's example, unchanged", () => {
  expect(readmeBlocks('store', 'ts', 'packages/store/README.md')).toEqual(readmeBlocks('store', 'ts'));
});
