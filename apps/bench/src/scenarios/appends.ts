/**
 * A1-A6: appending. Single-event appends against plain INSERTs of the same rows (A1), batch appends (A2), the cost
 * of registered views (A3: every view sees every decider; A3′: each view subscribes to a decider of its own), of
 * NOTIFY wake-ups (A4), of applying each command once (A5) and of event metadata (A6).
 */
import postgres from 'postgres';
import type { BenchContext, Figure } from '../context.js';
import { median } from '../context.js';
import { runLoad } from '../load.js';
import type { LoadWorkerInput } from '../load-worker.js';

async function registerViews(url: string, count: number) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`DELETE FROM views`;
    for (let v = 0; v < count; v++) await sql`SELECT * FROM register_view(${`view-${v}`})`;
  } finally {
    await sql.end();
  }
}

/** The register_view overload that subscribes a view to deciders (migration 0010), if the schema has it. */
async function hasSubscriptions(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ present: boolean }[]>`
      SELECT to_regprocedure('register_view(text, bigint, timestamp, text[], text[])') IS NOT NULL AS present`;
    return row?.present ?? false;
  } finally {
    await sql.end();
  }
}

/** `count` views, the first subscribed to Bench (the decider appended to), each other one to a decider of its own. */
async function registerSubscribedViews(url: string, count: number) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`DELETE FROM views`;
    for (let v = 0; v < count; v++) {
      const decider = v === 0 ? 'Bench' : `Other${v}`;
      await sql`SELECT * FROM register_view(${`view-${v}`}, 500, now()::timestamp, ${[decider]}::text[])`;
    }
  } finally {
    await sql.end();
  }
}

async function setWakeups(url: string, enabled: boolean) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT set_wakeups(${enabled})`;
  } finally {
    await sql.end();
  }
}

interface Side {
  kind: LoadWorkerInput['kind'];
  batchSize?: number;
  /** Before each of its rounds (the views it needs). */
  setUp?: () => Promise<void>;
}

/**
 * Medians of two set-ups measured in alternating rounds (a's round, then b's): the log grows through the run, and a
 * baseline measured minutes earlier, on a smaller table and before other checkpoints, favours the baseline.
 */
async function measureAlternating(
  ctx: BenchContext,
  url: string,
  clients: number,
  a: Side,
  b: Side,
): Promise<[number, number]> {
  const rates: [number[], number[]] = [[], []];
  for (let round = 0; round < ctx.rounds; round++) {
    for (const [index, side] of [a, b].entries()) {
      await side.setUp?.();
      const result = await runLoad({
        url,
        clients,
        durationMs: ctx.durationMs,
        kind: side.kind,
        batchSize: side.batchSize ?? 1,
        ratePerClient: 0,
        label: `${side.kind}${side.batchSize ?? 1}`,
      });
      if (result.errors > 0) ctx.log(`  ${side.kind}: ${result.errors} errors`);
      rates[index]?.push(result.eventsPerSecond);
    }
  }
  return [median(rates[0]), median(rates[1])];
}

/** Issue 11: at least 0.9 of a plain INSERT when commits are flushed, 0.7 when they are not (CPU-bound). */
function a1Target(ctx: BenchContext, ratio: number) {
  const floor = ctx.durable ? 0.9 : 0.7;
  return { description: `>= ${floor.toFixed(2)} of baseline`, met: ratio >= floor };
}

export async function appendScenarios(ctx: BenchContext, selected: Set<string>): Promise<Figure[]> {
  const figures: Figure[] = [];
  const url = await ctx.freshDatabase('appends');
  await registerViews(url, 1);
  if (selected.has('A1')) {
    for (const clients of [1, 8, 32]) {
      ctx.log(`A1: ${clients} clients`);
      const [baseline, append] = await measureAlternating(
        ctx,
        url,
        clients,
        { kind: 'insert' },
        { kind: 'append' },
      );
      figures.push({
        scenario: 'A1',
        case: `append_event, ${clients} client${clients > 1 ? 's' : ''}, 1 view`,
        unit: 'events/s',
        value: append,
        baseline: { label: 'plain INSERT, same table and indexes, no triggers', value: baseline },
        ratio: append / baseline,
        ...(clients === 8 ? { target: a1Target(ctx, append / baseline) } : {}),
      });
    }
  }
  if (selected.has('A2')) {
    for (const size of [10, 100]) {
      ctx.log(`A2: batches of ${size}, alternating with single appends`);
      const [single, rate] = await measureAlternating(
        ctx,
        url,
        8,
        { kind: 'append' },
        { kind: 'batch', batchSize: size },
      );
      figures.push({
        scenario: 'A2',
        case: `append_events, ${size} events per command, 8 clients`,
        unit: 'events/s',
        value: rate,
        baseline: { label: 'append_event at 8 clients (A1), in alternating rounds', value: single },
        ratio: rate / single,
        ...(size === 10 ? { target: { description: '>= 5x A1', met: rate / single >= 5 } } : {}),
      });
    }
  }
  if (selected.has('A3')) {
    for (const views of [5, 20]) {
      ctx.log(`A3: ${views} views, alternating with 1 view`);
      const [oneView, rate] = await measureAlternating(
        ctx,
        url,
        8,
        { setUp: () => registerViews(url, 1), kind: 'append' },
        { setUp: () => registerViews(url, views), kind: 'append' },
      );
      figures.push({
        scenario: 'A3',
        case: `append_event, 8 clients, ${views} views`,
        unit: 'events/s',
        value: rate,
        baseline: { label: 'the same with 1 view, in alternating rounds', value: oneView },
        ratio: rate / oneView,
        ...(views === 20 ? { target: { description: '>= 0.7 of 1 view', met: rate / oneView >= 0.7 } } : {}),
      });
    }
    await registerViews(url, 1);
  }
  if (selected.has('A3′')) {
    const views = 20;
    const figure = {
      scenario: 'A3′',
      case: `append_event to one decider, 8 clients, ${views} views each subscribed to a different decider`,
      unit: 'events/s',
    };
    if (await hasSubscriptions(url)) {
      ctx.log(`A3′: ${views} views, each subscribed to a different decider, alternating with 1 view`);
      const [oneView, rate] = await measureAlternating(
        ctx,
        url,
        8,
        { setUp: () => registerViews(url, 1), kind: 'append' },
        { setUp: () => registerSubscribedViews(url, views), kind: 'append' },
      );
      figures.push({
        ...figure,
        value: rate,
        baseline: { label: 'the same with 1 view, in alternating rounds', value: oneView },
        ratio: rate / oneView,
        target: { description: '>= 0.95 of 1 view', met: rate / oneView >= 0.95 },
      });
      await registerViews(url, 1);
    } else {
      const reason =
        'this schema has no register_view(view, delay, start_at, deciders, event types) (migration 0010)';
      ctx.log(`A3′: skipped, ${reason}`);
      figures.push({
        ...figure,
        baseline: { label: 'the same with 1 view', value: Number.NaN },
        value: Number.NaN,
        skipped: reason,
      });
    }
  }
  if (selected.has('A4')) {
    for (const clients of [8, 32]) {
      ctx.log(`A4: NOTIFY wake-ups, ${clients} clients`);
      const off: number[] = [];
      const on: number[] = [];
      for (let round = 0; round < ctx.rounds; round++) {
        await setWakeups(url, false);
        off.push(
          (
            await runLoad({
              url,
              clients,
              durationMs: ctx.durationMs,
              kind: 'append',
              batchSize: 1,
              ratePerClient: 0,
              label: 'off',
            })
          ).eventsPerSecond,
        );
        await setWakeups(url, true);
        on.push(
          (
            await runLoad({
              url,
              clients,
              durationMs: ctx.durationMs,
              kind: 'append',
              batchSize: 1,
              ratePerClient: 0,
              label: 'on',
            })
          ).eventsPerSecond,
        );
      }
      await setWakeups(url, false);
      figures.push({
        scenario: 'A4',
        case: `append_event with NOTIFY wake-ups, ${clients} clients`,
        unit: 'events/s',
        value: median(on),
        baseline: { label: 'wake-ups off', value: median(off) },
        ratio: median(on) / median(off),
        note: 'report only: the default is the better trade',
      });
    }
  }
  if (selected.has('A5')) {
    // Alternating rounds, same conditions: one event per command, each client on a stream of its own that grows as
    // it goes (the once check reads the stream, as the load before deciding does).
    ctx.log('A5: append_events once per command against plain append_events, 8 clients');
    const [plain, once] = await measureAlternating(ctx, url, 8, { kind: 'batch' }, { kind: 'batch-once' });
    const streamLength = Math.round((once * ctx.durationMs) / 1000 / 8);
    figures.push({
      scenario: 'A5',
      case: 'append_events once per command, 1 event per command, 8 clients',
      unit: 'events/s',
      value: once,
      baseline: { label: 'append_events, the same without the check', value: plain },
      ratio: once / plain,
      note: `report only: streams of up to ~${streamLength} events by the end of a round`,
    });
  }
  if (selected.has('A6')) {
    // Alternating rounds, same conditions: the metadata the command handler writes, against none.
    ctx.log('A6: append_events with metadata against append_events without, 8 clients');
    const [without, withMetadata] = await measureAlternating(
      ctx,
      url,
      8,
      { kind: 'batch' },
      { kind: 'batch-metadata' },
    );
    figures.push({
      scenario: 'A6',
      case: 'append_events with metadata (correlation, causation, traceparent), 1 event per command, 8 clients',
      unit: 'events/s',
      value: withMetadata,
      baseline: { label: 'append_events, the same without metadata', value: without },
      ratio: withMetadata / without,
      note: 'report only: each event gets an entry in the index of correlation ids',
    });
  }
  return figures;
}
