/**
 * A very long stream is read page by page: iterating 100,000 events (about 100 MB of payload) keeps the heap flat.
 * A scenario (`pnpm test:scenarios`), not a unit test: writing and reading 100 MB takes about 11 s on a quiet
 * two-core machine, several times that on a busy one. Paging itself (every event once, in order, across pages) is
 * in the fast suite (test-support/event-store.suite.ts, pageSize 2).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, expect, test } from 'vitest';
import { createEventStore } from './event-store.js';
import { defineEvents, event } from './events.js';

const database = await createTestDatabase();
afterAll(() => database.drop());

// What the heap retains, not the garbage a lazy collector has yet to take: collect before each sample.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;
const retainedHeap = () => {
  collectGarbage();
  return process.memoryUsage().heapUsed;
};

const ledger = defineEvents('Ledger', { Noted: event<{ i: number; note: string }>() });

test('iterates a 100,000-event stream in bounded memory, every event once and in order', async () => {
  const db = drizzle(database.connect({ max: 1 }));
  const store = createEventStore(db, ledger, { pageSize: 1000, validateOnLoad: false });
  await store.register();
  const count = 100_000;
  // One statement writes the whole chain; each row still passes the append trigger.
  await db.execute(sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'Noted', md5('long' || i)::uuid, 'Ledger', 'long-stream', jsonb_build_object('i', i, 'note', repeat('x', 1000)),
           md5('command' || i)::uuid, CASE WHEN i = 1 THEN NULL ELSE md5('long' || (i - 1))::uuid END
    FROM generate_series(1, ${count}) AS i`);

  const baseline = retainedHeap();
  let peak = baseline;
  let seen = 0;
  let previousOffset = 0;
  for await (const e of store.iterate('long-stream')) {
    seen++;
    expect(e.data.i).toBe(seen);
    if (e.offset <= previousOffset) throw new Error(`offset ${e.offset} after ${previousOffset}`);
    previousOffset = e.offset;
    if (seen % 5000 === 0) peak = Math.max(peak, retainedHeap());
  }
  expect(seen).toBe(count);
  // Holding the stream would retain well over 100 MB of heap; reading it by pages retains a few pages' worth.
  const grownMb = (peak - baseline) / 1024 / 1024;
  console.log(`iterating ${count} events: the retained heap grew by at most ${grownMb.toFixed(1)} MB`);
  expect(grownMb).toBeLessThan(32);
});
