/** The demo end to end, at a small size: its final check must pass. */
import { Writable } from 'node:stream';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';
import { runDemo } from './main.js';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

test('the demo appends, projects, and checks that every event was projected exactly once, in order', async () => {
  let output = '';
  const out = new Writable({
    write(chunk, _encoding, done) {
      output += String(chunk);
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  const result = await runDemo({
    url: database.url,
    producers: 4,
    workers: 2,
    orders: 60,
    restaurants: 2,
    out,
  });
  expect(result.interrupted).toBe(false);
  expect(result.check.ok).toBe(true);
  expect(result.check.lines).toHaveLength(8);
  for (const line of result.check.lines) expect(line).toMatch(/^ok /);
  // A write read back once waitForView resolved.
  expect(result.check.lines.at(-1)).toMatch(/^ok {3}read-your-writes: .* holds 9 of 9 dishes$/);
  // The rules said no to some commands, and writers collided on the same restaurants.
  expect(result.stats.rejected).toBeGreaterThan(0);
  expect(result.stats.ordersPrepared).toBe(54);
  expect(output).toContain('restaurant-menus (read model)');
  expect(output).toMatch(/appended \d+ \| projected \d+ \| lag \d+/);
});
