/**
 * L1: how long an event waits between its append's commit and the start of its handler, at 100 events/s, with the
 * default wake-ups (the shared probe of the log's head), with NOTIFY wake-ups and with polling only (a 500 ms polling
 * delay). Appender and worker share this process's clock.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { createProjection, setWakeups, type WakeupMode } from '@fstore/stream';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { BenchContext, Figure } from '../context.js';

const bench = defineEvents('Bench', { Happened: event<{ n: number }>() });

function percentile(sorted: number[], q: number) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

async function measure(url: string, wakeups: WakeupMode, seconds: number) {
  const sql = postgres(url, { max: 8, onnotice: () => {} });
  const db = drizzle(sql);
  await setWakeups(db, wakeups === 'notify');
  const committed = new Map<string, number>();
  const latencies: number[] = [];
  const view = `latency-${wakeups}-${randomUUID()}`;
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
  const seconds = ctx.quick ? 2 : 10;
  const figures: Figure[] = [];
  ctx.log('L1: polling only');
  const polling = await measure(url, 'off', seconds);
  ctx.log('L1: NOTIFY wake-ups');
  const notified = await measure(url, 'notify', seconds);
  ctx.log('L1: default wake-ups (log-head probe)');
  const probed = await measure(url, 'probe', seconds);
  for (const [label, sorted] of [
    ['default wake-ups (log-head probe)', probed],
    ['NOTIFY wake-ups', notified],
    ['polling only, 500 ms delay', polling],
  ] as const) {
    const [p50, p95, p99] = [percentile(sorted, 0.5), percentile(sorted, 0.95), percentile(sorted, 0.99)];
    figures.push({
      scenario: 'L1',
      case: `append commit to handler start, 100 events/s, ${label}: p50 (p95, p99 ${p95.toFixed(1)}, ${p99.toFixed(1)})`,
      unit: 'ms',
      value: p50,
      ...(label.startsWith('default')
        ? { target: { description: 'p50 <= 20 ms, p99 <= 100 ms', met: p50 <= 20 && p99 <= 100 } }
        : { note: `report only: ${sorted.length} events measured` }),
    });
  }
  return figures;
}
