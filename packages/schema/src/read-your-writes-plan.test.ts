/**
 * view_reached's cost follows one stream, not the view: over a view with 20,000 streams in its lock rows (and as
 * many events), one look reads the stream's lock row and events through their indexes. auto_explain shows the
 * plans run inside it.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';
import { explainedPlans } from './test-support/auto-explain.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const streams = 20_000;

test('one look at one stream of a view with 20,000 streams scans neither the lock rows nor the log', async () => {
  await db.sql`SELECT * FROM register_decider_event('reach', 'happened')`;
  await db.sql`SELECT * FROM register_view('reach-view', 500, 'epoch')`;
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'happened', gen_random_uuid(), 'reach', 'stream-' || i, '{}', gen_random_uuid(), NULL
    FROM generate_series(1, ${streams}) AS i`;
  await db.sql`SELECT advance_view('reach-view', ${streams})`;
  await db.sql`ANALYZE events`;
  await db.sql`ANALYZE locks`;
  const [{ count } = { count: 0 }] = await db.sql<{ count: number }[]>`
    SELECT count(*)::int AS count FROM locks WHERE view = 'reach-view'`;
  expect(count).toBe(streams);
  const [event] = await db.sql<{ offset: string }[]>`
    SELECT "offset" FROM events WHERE decider_id = 'stream-777'`;

  let state = '';
  const plans = await explainedPlans(db, async (sql) => {
    [{ state } = { state: '' }] = await sql<{ state: string }[]>`
      SELECT state FROM view_reached('reach-view', 'stream-777', ${event?.offset ?? 0})`;
  });
  expect(state).toBe('pending');
  const scans = plans.flatMap((plan) => plan.match(/Seq Scan on (locks|events)\b.*/g) ?? []);
  expect(scans).toEqual([]);
  // The stream's lock row and its one event: no step of any plan returns more than a handful of rows.
  const rows = plans.flatMap((plan) =>
    [...plan.matchAll(/actual time=\S+ rows=(\d+)/g)].map((m) => Number(m[1])),
  );
  expect(rows.length).toBeGreaterThan(0);
  expect(Math.max(...rows)).toBeLessThanOrEqual(1);
});
