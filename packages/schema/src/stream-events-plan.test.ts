/**
 * stream_events must cost the same with a thousand streams or a million: it may read only the streams that have
 * unread events, through locks_pending_idx. auto_explain shows the plans PostgreSQL runs inside the function
 * (custom plans for the first calls, then the cached generic plan), with the rows each step really read.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

test('leasing reads only pending streams, through locks_pending_idx, whatever the size of the view', async () => {
  const view = `view-${randomUUID()}`;
  const caughtUp = 20_000;
  const pending = 5;
  await db.sql`SELECT * FROM register_decider_event('plan', 'happened')`;
  await db.sql`SELECT * FROM register_view(${view})`;
  // 20,005 one-event streams in one statement; the view reads them all into lock rows (appends no longer write
  // them), then acknowledges all but five.
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'happened', gen_random_uuid(), 'plan', 'stream-' || i, '{}', gen_random_uuid(), NULL
    FROM generate_series(1, ${caughtUp + pending}) AS i`;
  // (Other test files share this server: one of their transactions still open holds the horizon back a moment.)
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
    await db.sql`SELECT advance_view(${view}, ${caughtUp + pending})`;
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM locks WHERE view = ${view}`;
    if (row?.n === caughtUp + pending) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await db.sql`UPDATE locks SET last_offset = "offset" WHERE view = ${view} AND decider_id NOT IN (
    SELECT 'stream-' || i FROM generate_series(1, ${pending}) AS i)`;
  await db.sql`ANALYZE locks`;

  const plans: string[] = [];
  const explained = db.connect({
    max: 1,
    onnotice: (notice) => {
      if (String(notice.message).includes('Query Text')) plans.push(String(notice.message));
    },
  });
  await explained`LOAD 'auto_explain'`;
  await explained`SET auto_explain.log_min_duration = 0`;
  await explained`SET auto_explain.log_analyze = on`;
  await explained`SET auto_explain.log_nested_statements = on`;
  await explained`SET client_min_messages = log`;

  let delivered = 0;
  // Enough calls for PL/pgSQL to switch from custom plans to its cached generic plan.
  for (let call = 0; call < 8; call++) {
    delivered += (await explained`SELECT * FROM stream_events(${view}, 10)`).length;
  }
  expect(delivered).toBe(pending);

  const leasing = plans.filter((plan) => plan.includes('WITH candidates'));
  expect(leasing).toHaveLength(8);
  for (const plan of leasing) {
    expect(plan).toContain('Index Scan using locks_pending_idx on locks');
    expect(plan).not.toMatch(/Seq Scan on locks|Bitmap Heap Scan on locks/);
    // The scan of the pending index read at most the five pending streams, not the 20,000 caught up.
    const scan = plan.match(
      /Index Scan using locks_pending_idx on locks.*\(actual time=[\d.]+\.\.[\d.]+ rows=([\d.]+)/,
    );
    expect(Number(scan?.[1])).toBeLessThanOrEqual(pending);
  }
});
