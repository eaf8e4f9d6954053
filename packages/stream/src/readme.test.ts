/**
 * The README's @fstore/stream example, run as it is written, as its own process against a fresh database. The
 * package's own README (what a registry shows) carries the same example.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { readmeBlocks, runReadmeExample } from '@fstore/test-harness/readme';
import { afterAll, expect, test } from 'vitest';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

test('the README example projects tasks into a read model', async () => {
  const stdout = await runReadmeExample('stream', new URL('..', import.meta.url), {
    DATABASE_URL: database.url,
  });
  expect(stdout.trim()).toBe('celebrate, write the docs');
});

test("the package README carries the README's example, unchanged", () => {
  expect(readmeBlocks('stream', 'ts', 'packages/stream/README.md')).toEqual(readmeBlocks('stream', 'ts'));
});
