/**
 * S1-S3: streaming a backlog. Consumers are projection workers (lease a batch, no-op handler, acknowledge), each
 * in its own process; the baseline reads the same events with a plain indexed range scan, no leases.
 */
import type { BenchContext, Figure } from '../context.js';
import { median } from '../context.js';
import { type Backlog, drained, restoreBacklog, writeBacklog } from '../dataset.js';
import { runConsumers } from '../load.js';

/** Median events/s of `consumers` projection processes draining the backlog (restored before each round). */
async function projectRate(
  ctx: BenchContext,
  url: string,
  backlog: Backlog,
  consumers: number,
  limitMs: number,
) {
  const rates: number[] = [];
  for (let round = 0; round < ctx.rounds; round++) {
    await restoreBacklog(url, backlog);
    const result = await runConsumers(
      { url, mode: 'project', view: backlog.view, durationMs: limitMs, concurrency: 4, batchSize: 100 },
      consumers,
      () => drained(url, backlog.view, Date.now() + limitMs),
    );
    rates.push(result.events / result.seconds);
  }
  return median(rates);
}

async function scanRate(ctx: BenchContext, url: string, limitMs: number) {
  const rates: number[] = [];
  for (let round = 0; round < ctx.rounds; round++) {
    const result = await runConsumers(
      { url, mode: 'scan', view: '', durationMs: limitMs, concurrency: 1, batchSize: 1000 },
      1,
    );
    rates.push(result.events / result.seconds);
  }
  return median(rates);
}

/** Issue 11: one-event streams at 0.25 of the scan at least, 100 events per stream at 0.5. */
function s1Target(oneEventStreams: boolean, ratio: number) {
  const floor = oneEventStreams ? 0.25 : 0.5;
  return { description: `>= ${floor} of baseline`, met: ratio >= floor };
}

export interface StreamingCharts {
  byStreams: [number, number][];
  byConsumers: { name: string; points: [number, number][] }[];
}

export async function streamingScenarios(
  ctx: BenchContext,
  selected: Set<string>,
  charts: StreamingCharts,
): Promise<Figure[]> {
  const figures: Figure[] = [];
  const backlogSize = ctx.quick ? 5_000 : 100_000;
  // Each measurement drains the backlog or stops at this limit (the rate is what was read by then).
  const limitMs = ctx.quick ? 4_000 : 10_000;
  let s1At1000 = 0;
  if (selected.has('S1') || selected.has('S2')) {
    for (const streams of [1_000, backlogSize]) {
      const url = await ctx.freshDatabase(`s1-${streams}`);
      ctx.log(
        `S1: writing ${backlogSize.toLocaleString('en-US')} events over ${streams.toLocaleString('en-US')} streams`,
      );
      const backlog = await writeBacklog(url, {
        pendingStreams: streams,
        eventsPerStream: backlogSize / streams,
      });
      const baseline = await scanRate(ctx, url, limitMs);
      const series: [number, number][] = [];
      for (const consumers of selected.has('S1') ? [1, 4, 8] : [4]) {
        ctx.log(`S1: ${consumers} consumers, ${streams.toLocaleString('en-US')} streams`);
        const rate = await projectRate(ctx, url, backlog, consumers, limitMs);
        series.push([consumers, rate]);
        if (streams === 1_000 && consumers === 4) s1At1000 = rate;
        if (selected.has('S1')) {
          figures.push({
            scenario: 'S1',
            case: `${consumers} consumer${consumers > 1 ? 's' : ''}, ${backlogSize.toLocaleString('en-US')} events over ${streams.toLocaleString('en-US')} streams`,
            unit: 'events/s',
            value: rate,
            baseline: { label: 'one reader, indexed range scan, no leases', value: baseline },
            ratio: rate / baseline,
            ...(consumers === 4 ? { target: s1Target(streams === backlogSize, rate / baseline) } : {}),
          });
        }
      }
      charts.byConsumers.push({ name: `${streams.toLocaleString('en-US')} streams`, points: series });
    }
  }
  if (selected.has('S2')) {
    charts.byStreams.push([1_000, s1At1000]);
    for (const total of ctx.quick ? [10_000] : [10_000, 100_000, 1_000_000]) {
      const url = await ctx.freshDatabase(`s2-${total}`);
      ctx.log(
        `S2: ${total.toLocaleString('en-US')} streams in the view (${(total - 1000).toLocaleString('en-US')} caught up)`,
      );
      const backlog = await writeBacklog(url, {
        caughtUpStreams: total - 1_000,
        pendingStreams: 1_000,
        eventsPerStream: backlogSize / 1_000,
      });
      const rate = await projectRate(ctx, url, backlog, 4, limitMs);
      charts.byStreams.push([total, rate]);
      figures.push({
        scenario: 'S2',
        case: `4 consumers, ${backlogSize.toLocaleString('en-US')} events to read, ${total.toLocaleString('en-US')} streams in the view`,
        unit: 'events/s',
        value: rate,
        baseline: { label: 'S1 at 1,000 streams', value: s1At1000 },
        ratio: rate / s1At1000,
        ...(total === 1_000_000
          ? { target: { description: '>= 0.7 of 1,000 streams', met: rate / s1At1000 >= 0.7 } }
          : {}),
      });
    }
  }
  if (selected.has('S3')) {
    const hot = ctx.quick ? 5_000 : 100_000;
    const url = await ctx.freshDatabase('s3');
    ctx.log(`S3: one stream of ${hot.toLocaleString('en-US')} events`);
    const backlog = await writeBacklog(url, { pendingStreams: 1, eventsPerStream: hot });
    const batched = await projectRate(ctx, url, backlog, 1, limitMs);
    const oneByOne: number[] = [];
    for (let round = 0; round < ctx.rounds; round++) {
      await restoreBacklog(url, backlog);
      const result = await runConsumers(
        {
          url,
          mode: 'one-by-one',
          view: backlog.view,
          durationMs: Math.min(limitMs, ctx.durationMs * 2),
          concurrency: 1,
          batchSize: 1,
        },
        1,
      );
      oneByOne.push(result.events / result.seconds);
    }
    figures.push({
      scenario: 'S3',
      case: `one hot stream, ${hot.toLocaleString('en-US')} events, batch leases of 100`,
      unit: 'events/s',
      value: batched,
      baseline: { label: 'one event per lease (stream_events + ack_event)', value: median(oneByOne) },
      ratio: batched / median(oneByOne),
      target: { description: '>= 5x one event per lease', met: batched / median(oneByOne) >= 5 },
    });
  }
  return figures;
}
