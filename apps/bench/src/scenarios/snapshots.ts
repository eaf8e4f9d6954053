/**
 * H1: handling a command on a long stream (100,000 events; 10,000 in a quick run), with and without snapshots. The
 * stream is written in one statement; each command loads it (from the snapshot, or whole), decides and appends one
 * event. The same handler, the same stream, commands alternating between the two handlers.
 */
import { randomUUID } from 'node:crypto';
import {
  createCommandHandler,
  createEventStore,
  type Decider,
  defineEvents,
  type EventOf,
  event,
} from '@fstore/store';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { type BenchContext, type Figure, median } from '../context.js';

const counter = defineEvents('Counter', { Added: event<{ by: number }>() });
const decider: Decider<{ add: number }, { total: number }, EventOf<typeof counter>> = {
  initialState: { total: 0 },
  decide: (command) => [{ type: 'Added', data: { by: command.add } }],
  evolve: (state, e) => ({ total: state.total + e.data.by }),
};

export async function snapshotScenarios(ctx: BenchContext): Promise<Figure[]> {
  const events = ctx.quick ? 10_000 : 100_000;
  const url = await ctx.freshDatabase('snapshots');
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  try {
    const store = createEventStore(drizzle(sql), counter);
    await store.register();
    const id = `counter-${randomUUID()}`;
    ctx.log(`H1: writing a stream of ${events.toLocaleString('en-US')} events`);
    // One chained statement: each row's previous_id is the row before it (the append trigger sees them in order).
    await sql`
      WITH ids AS (SELECT n, gen_random_uuid() AS event_id FROM generate_series(1, ${events}) AS n)
      INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'Added', event_id, 'Counter', ${id}, '{"by": 1}', gen_random_uuid(), lag(event_id) OVER (ORDER BY n)
      FROM ids
      ORDER BY n`;
    const without = createCommandHandler(store, decider);
    const withSnapshots = createCommandHandler(store, decider, { snapshots: { every: 100, version: 'v1' } });
    // The first command with snapshots reads the stream whole and stores the first one.
    const first = await withSnapshots(id, { add: 1 });
    if (first.state.total !== events + 1) throw new Error(`H1: the state is ${first.state.total}`);
    const timings = { without: [] as number[], with: [] as number[] };
    const rounds = ctx.quick ? 2 : Math.max(3, ctx.rounds);
    ctx.log(`H1: ${rounds} commands each way, alternating`);
    for (let round = 0; round < rounds; round++) {
      for (const [name, handle] of [
        ['without', without],
        ['with', withSnapshots],
      ] as const) {
        const started = performance.now();
        await handle(id, { add: 1 });
        timings[name].push(performance.now() - started);
      }
    }
    const withMs = median(timings.with);
    const withoutMs = median(timings.without);
    return [
      {
        scenario: 'H1',
        case: `a command on a stream of ${events.toLocaleString('en-US')} events, with snapshots every 100 events`,
        unit: 'ms per command',
        value: withMs,
        baseline: { label: 'the same command, loading the stream whole', value: withoutMs },
        ratio: withoutMs / withMs,
        target: { description: '>= 20x faster', met: withoutMs / withMs >= 20 },
        note: 'ratio: times faster',
      },
    ];
  } finally {
    await sql.end({ timeout: 5 });
  }
}
