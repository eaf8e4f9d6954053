/** The README's @fstore/stream example, run as it is written, as its own process against a fresh database. */
import { createTestDatabase } from '@fstore/test-harness';
import { runReadmeExample } from '@fstore/test-harness/readme';
import { afterAll, expect, test } from 'vitest';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

test('the README example projects tasks into a read model', async () => {
  const stdout = await runReadmeExample('stream', new URL('..', import.meta.url), {
    DATABASE_URL: database.url,
  });
  expect(stdout.trim()).toBe('celebrate, write the docs');
});
