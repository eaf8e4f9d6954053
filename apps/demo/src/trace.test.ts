/**
 * `pnpm demo -- --trace`: with OpenTelemetry's SDK registered, a small demo run leaves the spans of its orders, and
 * the tree of one order shows its commands (load, append) and the projection handlers their appends reached.
 */
import { Writable } from 'node:stream';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';
import { runDemo } from './main.js';
import { startTracing } from './trace.js';

const tracing = startTracing();
const database = await createTestDatabase({ from: 'empty' });
afterAll(async () => {
  await tracing.stop();
  await database.drop();
});
const discard = new Writable({ write: (_chunk, _encoding, done) => done() }) as unknown as NodeJS.WriteStream;

test('the span tree of one order: each command with its load and append, each append with the handlers it reached', async () => {
  const result = await runDemo({
    url: database.url,
    producers: 2,
    workers: 1,
    orders: 10,
    restaurants: 1,
    out: discard,
  });
  expect(result.check.ok).toBe(true);
  const lines = tracing.orderTree();
  expect(lines[0]).toMatch(/^trace of run\w+-order-\d+$/);
  // An order is created, then prepared: two commands, each one load and one append, each append projected once by
  // order-board (the view of Order events).
  // One order in five is then marked prepared again, which its rules refuse.
  const shape = lines
    .slice(1)
    .map((line) => line.replace(/ {2}\d+\.\d ms {2}rejected: CommandRejected$/, ' (rejected)'))
    .map((line) => line.replace(/ {2}\d+\.\d ms.*$/, ''));
  expect(shape.slice(8)).toEqual(shape.length > 8 ? ['handle Order (rejected)'] : []);
  expect(shape.slice(0, 8)).toEqual([
    'handle Order',
    '  load Order',
    '  append Order',
    '    -> project OrderCreated for order-board',
    'handle Order',
    '  load Order',
    '  append Order',
    '    -> project OrderPrepared for order-board',
  ]);
  expect(lines[1]).toMatch(/1 event, \d+ attempts?, \d+ conflicts?$/);
  expect(lines[4]).toMatch(/\(in process order-board, a batch of \d+ events?\)$/);
});
