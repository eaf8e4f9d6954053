/**
 * The projection worker in process on PGlite (one session): leases, handles in a transaction, acknowledges.
 * Concurrency beyond one stream at a time and other workers need a server (projection.test.ts).
 */
import { PGlite } from '@electric-sql/pglite';
import { migrate } from '@fstore/schema';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, expect, onTestFailed, test } from 'vitest';
import { createProjection } from './projection.js';

const pg = new PGlite();
afterAll(() => pg.close());
// Starting PGlite (initdb in WebAssembly) is most of this file's work: a hook's budget, not the test's.
beforeAll(() => migrate(pg));

test('a projection on PGlite handles every event once, in order, with its acknowledgement', async ({
  signal,
}) => {
  const db = drizzle(pg);
  const counter = defineEvents('Counter', { Added: event<{ n: number }>() });
  const store = createEventStore(db, counter);
  await store.register();
  await db.execute(
    sql`CREATE TABLE totals (counter text PRIMARY KEY, total int NOT NULL, last_offset bigint NOT NULL)`,
  );
  for (const id of ['c1', 'c2']) {
    let last: string | null = null;
    for (let n = 1; n <= 5; n++) {
      const [e] = await store.append(id, [{ type: 'Added', data: { n } }], { expectedLastEventId: last });
      last = e?.eventId ?? null;
    }
  }
  const warnings: string[] = [];
  const projection = createProjection({
    db,
    view: 'totals',
    events: [counter],
    concurrency: 1,
    batchSize: 2,
    pollIntervalMs: 20,
    // The default wake-ups probe the log's head; on PGlite too, without a warning.
    logger: {
      debug() {},
      info() {},
      warn: (message) => warnings.push(message),
      error: (message) => warnings.push(message),
    },
    async handle(e, tx) {
      await tx.execute(sql`
        INSERT INTO totals VALUES (${e.deciderId}, ${e.data.n}, ${e.offset})
        ON CONFLICT (counter) DO UPDATE SET total = totals.total + ${e.data.n}, last_offset = ${e.offset}`);
    },
  });
  onTestFailed(() => console.log(`the projection when the test failed: ${JSON.stringify(projection.stats)}`));
  await projection.start();
  try {
    // Until it has caught up, however long that takes on this machine: the test's timeout is the bound.
    while (!signal.aborted) {
      const { rows } = await pg.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM locks WHERE view = 'totals' AND last_offset < "offset"`,
      );
      if (rows[0]?.n === 0 && projection.stats.handled === 10) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await projection.stop();
  }
  // No deduplication in the handler: a second delivery would show in the totals.
  const { rows } = await pg.query(`SELECT counter, total FROM totals ORDER BY counter`);
  expect(rows).toEqual([
    { counter: 'c1', total: 15 },
    { counter: 'c2', total: 15 },
  ]);
  expect(warnings).toEqual([]);
});
