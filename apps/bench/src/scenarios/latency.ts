/**
 * L1: how long an event waits between its append's commit and the start of its handler, at 100 events/s, with NOTIFY
 * wake-ups and with polling only (a 500 ms polling delay). Appender and worker share this process's clock.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { createProjection, setWakeups } from '@fstore/stream';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { BenchContext, Figure } from '../context.js';

const bench = defineEvents('Bench', { Happened: event<{ n: number }>() });

function percentile(sorted: number[], q: number) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

async function measure(url: string, wakeups: boolean, seconds: number) {
  const sql = postgres(url, { max: 8, onnotice: () => {} });
  const db = drizzle(sql);
  await setWakeups(db, wakeups);
  const committed = new Map<string, number>();
  const latencies: number[] = [];
  const view = `latency-${wakeups ? 'wakeups' : 'polling'}-${randomUUID()}`;
  const projection = createProjection({
    db,
    view,
    events: [bench],
    startAt: new Date(),
    pollIntervalMs: 500,
    wakeups,
    handle(e) {
      const at = committed.get(e.eventId);
      if (at !== undefined) latencies.push(performance.now() - at);
    },
  });
  await projection.start();
  await new Promise((resolve) => setTimeout(resolve, 1000)); // idle: the worker is at its polling ceiling
  const store = createEventStore(db, bench);
  const streams = Array.from({ length: 10 }, () => ({
    id: `latency-${randomUUID()}`,
    last: null as string | null,
  }));
  const total = seconds * 100;
  const start = performance.now();
  for (let n = 0; n < total; n++) {
    const due = start + n * 10;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const stream = streams[n % streams.length] as { id: string; last: string | null };
    const eventId = randomUUID();
    await store.append(stream.id, [{ type: 'Happened', data: { n }, eventId }], {
      expectedLastEventId: stream.last,
    });
    committed.set(eventId, performance.now());
    stream.last = eventId;
  }
  const deadline = Date.now() + 5000;
  while (latencies.length < total && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
  await projection.stop();
  await setWakeups(db, false);
  await sql.end();
  return latencies.sort((a, b) => a - b);
}

export async function latencyScenarios(ctx: BenchContext): Promise<Figure[]> {
  const url = await ctx.freshDatabase('latency');
  const seconds = ctx.quick ? 3 : 10;
  const figures: Figure[] = [];
  const polling = await measure(url, false, seconds);
  ctx.log('L1: wake-ups');
  const woken = await measure(url, true, seconds);
  for (const [label, sorted] of [
    ['NOTIFY wake-ups', woken],
    ['polling only, 500 ms delay', polling],
  ] as const) {
    figures.push({
      scenario: 'L1',
      case: `append commit to handler start, 100 events/s, ${label}: p50 (p95, p99 ${percentile(sorted, 0.95).toFixed(1)}, ${percentile(sorted, 0.99).toFixed(1)})`,
      unit: 'ms',
      value: percentile(sorted, 0.5),
      ...(label === 'NOTIFY wake-ups'
        ? { target: { description: 'p50 <= 20 ms', met: percentile(sorted, 0.5) <= 20 } }
        : { note: `${sorted.length} events measured` }),
    });
  }
  return figures;
}
