/**
 * C1: catch-up. A log of events over many streams already exists; a new view registered to start at the beginning
 * of the log reads all of it with a no-op handler (4 worker processes, as S1), against one plain indexed range scan
 * of the same log. The time counts from the registration to the moment the view has nothing left to read.
 */
import postgres from 'postgres';
import type { BenchContext, Figure } from '../context.js';
import { median } from '../context.js';
import { drained } from '../dataset.js';
import { runConsumers } from '../load.js';

async function writeLog(url: string, events: number, streams: number) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    // Streams interleaved in the log (event i of every stream, then event i + 1), as many writers leave it.
    await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'Happened', md5('c1-' || s || '-' || i)::uuid, 'Bench', 'c1-' || s, jsonb_build_object('n', i),
             gen_random_uuid(), CASE WHEN i = 1 THEN NULL ELSE md5('c1-' || s || '-' || (i - 1))::uuid END
      FROM generate_series(1, ${events / streams}) AS i, generate_series(1, ${streams}) AS s
      ORDER BY i, s`;
    await sql`VACUUM ANALYZE events`;
  } finally {
    await sql.end();
  }
}

export async function catchUpScenarios(ctx: BenchContext): Promise<Figure[]> {
  const [events, streams] = ctx.quick ? [20_000, 2_000] : [1_000_000, 100_000];
  const limitMs = ctx.quick ? 30_000 : 600_000;
  const url = await ctx.freshDatabase('c1');
  ctx.log(
    `C1: writing ${events.toLocaleString('en-US')} events over ${streams.toLocaleString('en-US')} streams`,
  );
  await writeLog(url, events, streams);
  const scans: number[] = [];
  for (let round = 0; round < ctx.rounds; round++) {
    const scan = await runConsumers(
      { url, mode: 'scan', view: '', durationMs: limitMs, concurrency: 1, batchSize: 1000 },
      1,
    );
    scans.push(scan.events / scan.seconds);
  }
  const baseline = median(scans);
  // One round: a million events take a minute or more to catch up with.
  const view = 'c1-new-view';
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  let rate = Number.NaN;
  let handled = 0;
  try {
    ctx.log('C1: a new view catches up, 4 worker processes');
    const started = performance.now();
    await sql`SELECT * FROM register_view(${view}, ${'1970-01-01 00:00:00'}::timestamp)`;
    const registration = (performance.now() - started) / 1000;
    const result = await runConsumers(
      { url, mode: 'project', view, durationMs: limitMs, concurrency: 4, batchSize: 100 },
      4,
      () => drained(url, view, Date.now() + limitMs),
    );
    handled = result.events;
    rate = result.events / (registration + result.seconds);
    ctx.log(
      `C1: ${result.events} events in ${(registration + result.seconds).toFixed(1)} s (registration ${registration.toFixed(2)} s)`,
    );
  } finally {
    await sql.end();
  }
  const complete = handled === events;
  return [
    {
      scenario: 'C1',
      case: `a new view catches up with ${events.toLocaleString('en-US')} events over ${streams.toLocaleString('en-US')} streams, 4 workers, no-op handler`,
      unit: 'events/s',
      value: rate,
      baseline: { label: 'one reader, indexed range scan, no leases', value: baseline },
      ratio: rate / baseline,
      target: {
        description: complete
          ? '>= 0.25 of baseline'
          : `>= 0.25 of baseline, all events (${handled.toLocaleString('en-US')} handled in ${limitMs / 1000} s)`,
        met: complete && rate / baseline >= 0.25,
      },
    },
  ];
}
