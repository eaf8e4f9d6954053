/**
 * D1: what an open dashboard costs the database. A log of 1,000,000 one-event streams (100,000 in a quick run) and
 * ten views, each with a lock row for every stream (the most bookkeeping a view can have: streams read through
 * leases, not taken whole by log batches), a backlog of 1,000 new events and a few parked events. Measured: the time
 * of one sample of the dashboard (its two statements: list_parked_events(), and view_lag() with the log's newest
 * offset and the tables' sizes), which it takes once a second while a page is open, as the share of a second it costs; and of
 * view_status(), which it calls once a minute.
 */
import { createSampler } from '@fstore/stream/dashboard';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { type BenchContext, type Figure, median } from '../context.js';

export async function dashboardScenarios(ctx: BenchContext): Promise<Figure[]> {
  const streams = ctx.quick ? 100_000 : 1_000_000;
  const views = 10;
  const url = await ctx.freshDatabase('dashboard');
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    ctx.log(`D1: ${streams.toLocaleString('en-US')} streams, ${views} views with a lock row for each`);
    await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'Happened', gen_random_uuid(), 'Bench', 'stream-' || s, '{"n": 1}', gen_random_uuid(), NULL
      FROM generate_series(1, ${streams}) AS s`;
    for (let v = 0; v < views; v++) {
      const view = `view-${v}`;
      await sql`SELECT * FROM register_view(${view}, 100, 'epoch'::timestamp)`;
      // Read into lock rows as advance_view reads them, and handled, as acknowledgements leave them.
      while (Number((await sql<{ n: number }[]>`SELECT advance_view(${view}, 100000) AS n`)[0]?.n) > 0);
      await sql`UPDATE locks SET last_offset = "offset" WHERE view = ${view}`;
    }
    // A backlog past every frontier, and parked events in one view.
    await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'Happened', gen_random_uuid(), 'Bench', 'new-' || s, '{"n": 1}', gen_random_uuid(), NULL
      FROM generate_series(1, 1000) AS s`;
    for (let p = 0; p < 5; p++) {
      const [lease] = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
        SELECT lease_id, decider_id, "offset" FROM lease_events('view-0', 1, 1, 60)`;
      if (lease)
        await sql`SELECT fail_event('view-0', ${lease.decider_id}, ${lease.lease_id}, ${lease.offset}, 'boom', 0, 1)`;
    }
    await sql`VACUUM ANALYZE locks`;
    await sql`VACUUM ANALYZE events`;
    const [size] = await sql<{ locks: string }[]>`SELECT pg_total_relation_size('locks') AS locks`;
    const sampler = createSampler(drizzle(sql), { intervalMs: 1000, historySeconds: 300, actions: false });
    const timings: number[] = [];
    const samples = ctx.quick ? 3 : 10;
    for (let i = 0; i < samples + 1; i++) {
      const started = performance.now();
      await sampler.refresh();
      // The first sample warms the caches.
      if (i > 0) timings.push(performance.now() - started);
    }
    sampler.close();
    const ms = median(timings);
    // And once a minute, view_status() for the archived counts: every lock row counted.
    const statusTimings: number[] = [];
    for (let i = 0; i < 3; i++) {
      const started = performance.now();
      await sql`SELECT * FROM view_status()`;
      statusTimings.push(performance.now() - started);
    }
    const statusMs = median(statusTimings);
    return [
      {
        scenario: 'D1',
        case: `one dashboard sample (taken once a second while a page is open): ${streams.toLocaleString('en-US')} streams, ${views} views, ${(Number(size?.locks) / 2 ** 20).toFixed(0)} MB of lock rows`,
        unit: 'ms',
        value: ms,
        note: `${((ms / 1000) * 100).toFixed(1)}% of one core while a page is open; none when no page is`,
      },
      {
        scenario: 'D1',
        case: 'view_status() on the same database (the dashboard calls it once a minute; fstore status calls it once)',
        unit: 'ms',
        value: statusMs,
        note: `${((statusMs / 60_000) * 100).toFixed(1)}% of one core at once a minute`,
      },
    ];
  } finally {
    await sql.end();
  }
}
