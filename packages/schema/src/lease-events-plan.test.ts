/**
 * lease_events advances the view first (advance_view), and that step too must cost the same with a thousand
 * streams or a million: it reads the log past the frontier through events_transaction_id_offset_idx and upserts
 * lock rows through locks_pkey, touching only the new events and their streams. auto_explain shows the plans
 * PostgreSQL runs inside the functions (custom plans for the first calls, then the cached generic plans), with the
 * rows each step really read.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('advancing a view at lease time reads only the new events and their lock rows, whatever the size of the view', async () => {
  const view = `view-${randomUUID()}`;
  const caughtUp = 20_000;
  const calls = 8;
  const perCall = 3;
  await db.sql`SELECT * FROM register_decider_event('plan', 'happened')`;
  await db.sql`SELECT * FROM register_view(${view})`;
  // 20,000 one-event streams, read into lock rows and acknowledged: a big view with nothing to do.
  await db.sql`
    INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
    SELECT 'happened', gen_random_uuid(), 'plan', 'old-' || i, '{}', gen_random_uuid(), NULL
    FROM generate_series(1, ${caughtUp}) AS i`;
  // (Other test files share this server: one of their transactions still open holds the horizon back a moment.)
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(50)) {
    await db.sql`SELECT advance_view(${view}, ${caughtUp})`;
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM locks WHERE view = ${view}`;
    if (row?.n === caughtUp) break;
  }
  await db.sql`UPDATE locks SET last_offset = "offset" WHERE view = ${view}`;
  await db.sql`ANALYZE events`;
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

  // Before each lease, three new events: one on a stream the view knows, two on new streams. Enough calls for
  // PL/pgSQL to switch from custom plans to its cached generic plans.
  let delivered = 0;
  for (let call = 0; call < calls; call++) {
    await db.sql`
      INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'happened', gen_random_uuid(), 'plan', s.id, '{}', gen_random_uuid(),
             (SELECT e.event_id FROM events e WHERE e.decider_id = s.id ORDER BY e."offset" DESC LIMIT 1)
      FROM (VALUES ('old-' || ${call + 1}), ('new-' || ${call} || '-a'), ('new-' || ${call} || '-b')) AS s(id)`;
    const leased = await (async () => {
      for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
        const rows = await explained`SELECT * FROM lease_events(${view}, 10, 10)`;
        if (rows.length > 0 || Date.now() > deadline) return rows;
      }
    })();
    delivered += leased.length;
    for (const row of leased) {
      await db.sql`SELECT * FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
    }
  }
  expect(delivered).toBe(calls * perCall);

  if (process.env.FR_DEBUG) console.log(plans.filter((p) => !p.includes("LOAD")).map((p) => p.slice(0, 2500)).join("\n=====\n"));
  const batches = plans.filter((plan) => plan.includes('WITH batch AS'));
  expect(batches.length).toBeGreaterThanOrEqual(calls);
  for (const plan of batches) {
    // The log past the frontier, through the (transaction_id, offset) index; never a scan of the log or the locks.
    expect(plan).toMatch(/Index (Only )?Scan using events_transaction_id_offset_idx on events/);
    expect(plan).toContain('Conflict Arbiter Indexes: locks_pkey');
    expect(plan).not.toMatch(/Seq Scan on (events|locks)|Bitmap Heap Scan on (events|locks)/);
    const scan = plan.match(
      /Index (?:Only )?Scan using events_transaction_id_offset_idx on events.*\(actual time=[\d.]+\.\.[\d.]+ rows=([\d.]+)/,
    );
    // It read the three new events (or fewer, if they came over two calls), not the 20,000 before them.
    expect(Number(scan?.[1])).toBeLessThanOrEqual(perCall);
  }
  // The look before the lock, on every call: one probe of the same index.
  const probes = plans.filter(
    (plan) => /EXISTS/.test(plan) && plan.includes('v_horizon') && !plan.includes('WITH batch AS'),
  );
  expect(probes.length).toBeGreaterThanOrEqual(calls);
  for (const plan of probes) {
    expect(plan).toMatch(/Index (Only )?Scan using events_transaction_id_offset_idx on events/);
    expect(plan).not.toMatch(/Seq Scan on events|Bitmap Heap Scan on events/);
  }
  // The lease itself still reads only pending streams.
  const leasing = plans.filter((plan) => plan.includes('WITH candidates'));
  expect(leasing.length).toBeGreaterThanOrEqual(calls);
  for (const plan of leasing) {
    expect(plan).toContain('Index Scan using locks_pending_idx on locks');
    expect(plan).not.toMatch(/Seq Scan on (events|locks)|Bitmap Heap Scan on (events|locks)/);
  }
  await explained.end();
});
