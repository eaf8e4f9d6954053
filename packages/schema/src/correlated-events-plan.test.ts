/**
 * Finding the events of one correlation id costs those events, not the log: get_correlated_events (and the store's
 * query builder, which asks the same) reads events_correlation_id_idx. Over 20,000 events, most of them with other
 * correlation ids or no metadata, the plan touches the three events asked for.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';
import { explainedPlans } from './test-support/auto-explain.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const events = 20_000;

test('get_correlated_events reads the index of correlation ids, not the log', async () => {
  await db.sql`SELECT * FROM register_decider_event('corr', 'happened')`;
  // Every third event has no metadata; the others have a correlation id shared by three events each.
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id, metadata)
    SELECT 'happened', gen_random_uuid(), 'corr', 'stream-' || i, '{}', gen_random_uuid(), NULL,
           CASE WHEN i % 3 = 0 THEN NULL ELSE jsonb_build_object('correlation_id', 'c-' || (i / 3)) END
    FROM generate_series(1, ${events}) AS i`;
  await db.sql`ANALYZE events`;

  let found: { decider_id: string }[] = [];
  const plans = await explainedPlans(db, async (sql) => {
    found = await sql<{ decider_id: string }[]>`SELECT decider_id FROM get_correlated_events('c-777')`;
  });
  // i / 3 = 777 for i in 2331..2333, and 2331 is a multiple of 3 (no metadata).
  expect(found.map((row) => row.decider_id)).toEqual(['stream-2332', 'stream-2333']);
  expect(plans.join('\n')).toMatch(/Index Scan (using|on) events_correlation_id_idx/);
  expect(plans.flatMap((plan) => plan.match(/Seq Scan on events\b.*/g) ?? [])).toEqual([]);
});
