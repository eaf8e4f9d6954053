/**
 * docs/testing-your-code.md's example, run as it is written, as its own process: it needs no server (PGlite). The
 * package README carries the same example.
 */
import { readmeBlocks, runReadmeExample } from '@fstore/test-harness/readme';
import { expect, test } from 'vitest';

const page = 'docs/testing-your-code.md';

test('the example specifies a decider and a projection, and prints the open tasks', async () => {
  const stdout = await runReadmeExample('testing', new URL('..', import.meta.url), {}, page);
  expect(stdout.trim()).toBe('[{"id":"t1","title":"write docs"}]');
});

test("the package README carries the manual's example, unchanged", () => {
  expect(readmeBlocks('testing', 'ts', 'packages/testing/README.md')).toEqual(
    readmeBlocks('testing', 'ts', page),
  );
});
