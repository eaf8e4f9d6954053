/**
 * The lock rows' statistics can lie: on a new install they were analyzed while there were none, and a view then
 * reads thousands of streams at once. read_into_lock_rows (behind advance_view) and claim_log_batch must still look
 * lock rows up through locks_pkey. With a sequential scan for each stream's look, over the rows the same statement
 * was inserting, reading 100,000 streams took 58 s instead of 2. auto_explain shows the plans run inside them.
 */
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, expect, test } from 'vitest';
import { explainedPlans } from './test-support/auto-explain.js';

const db = await createTestDatabase();
afterAll(() => db.drop());

/** auto_explain's plans (with the rows read) of every statement that `run` sends, nested ones included. */
const plansOf = (run: (sql: postgres.Sql) => Promise<unknown>) => explainedPlans(db, run);

const lockScans = (plans: string[]) =>
  plans.flatMap((plan) => (/Seq Scan on locks/.test(plan) ? [plan.split('\n')[1]?.trim()] : []));
const streams = 2000;

test('with lock rows analyzed while there were none, 2,000 new streams are read into lock rows through locks_pkey, and a batch over them looks them up the same way', async () => {
  await db.sql`SELECT * FROM register_decider_event('plan', 'happened')`;
  await db.sql`SELECT * FROM register_view('plan-view', 500, 'epoch')`;
  await db.sql`VACUUM ANALYZE locks`;
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'happened', gen_random_uuid(), 'plan', 'stream-' || i, '{}', gen_random_uuid(), NULL
    FROM generate_series(1, ${streams}) AS i`;
  await db.sql`ANALYZE events`;

  const advanced = await plansOf((sql) => sql`SELECT advance_view('plan-view', ${streams})`);
  const upsert = advanced.filter((plan) => plan.includes('INSERT INTO locks'));
  expect(upsert).toHaveLength(1);
  expect(upsert[0]).toContain(`Tuples Inserted: ${streams}`);
  expect(lockScans(advanced)).toEqual([]);

  // Every stream now has a lock row with nothing pending (the statistics still say there are none): a batch over a
  // new event on each takes them, holding their rows.
  await db.sql`UPDATE locks SET last_offset = "offset" WHERE view = 'plan-view'`;
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'happened', gen_random_uuid(), 'plan', e.decider_id, '{}', gen_random_uuid(), e.event_id
    FROM events e WHERE e.decider = 'plan'`;
  let taken = 0;
  const claimed = await plansOf((sql) =>
    sql.begin(async (tx) => {
      taken = (await tx`SELECT * FROM claim_log_batch('plan-view', ${streams})`).length;
    }),
  );
  expect(taken).toBe(streams);
  expect(lockScans(claimed)).toEqual([]);
});
