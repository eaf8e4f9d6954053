/**
 * The figures of issue 11's wake-ups, on an embedded PostgreSQL of its own with the durability defaults (fsync,
 * full_page_writes, synchronous_commit on):
 * - what one probe costs, against SELECT 1;
 * - L1: append commit to handler start at 100 events/s, for the probe, NOTIFY, and polling only (500 ms);
 * - idle load: the statements per second ten idle workers of one process send (pg_stat_database.xact_commit);
 * - append cost: 8 clients appending one event per command, with nothing else running, with the probe running,
 *   and with NOTIFY on (runs alternate, so that the machine's drift falls on both).
 *
 *   pnpm --filter @fstore/stream exec node --conditions=@fstore/source --import tsx \
 *     src/test-support/wakeup-figures.ts [--seconds 10] [--runs 3] [--only cost,l1,idle,appends]
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { migrate } from '@fstore/schema';
import { createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { startRestartableServer, withDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { registerView, setWakeups } from '../functions.js';
import { headQuery, probeIntervalMs, watchLogHead } from '../log-head-probe.js';
import { silentLogger } from '../observability.js';
import { createProjection } from '../projection.js';
import type { WakeupMode } from '../wakeups.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: 'cost,l1,idle,appends' },
  },
});
const seconds = Number(values.seconds);
const runs = Number(values.runs);
const only = new Set(values.only.split(','));

const bench = defineEvents('Bench', { Happened: event<{ n: number }>() });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

const server = await startRestartableServer({ durable: true });
try {
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  await admin`CREATE DATABASE figures`;
  const settings = await admin`SELECT name, setting FROM pg_settings
    WHERE name IN ('server_version', 'fsync', 'full_page_writes', 'synchronous_commit') ORDER BY name`;
  await admin.end();
  const url = withDatabase(server.adminUrl, 'figures');
  const sql = postgres(url, { max: 10, onnotice: () => {} });
  await migrate(sql);
  const db: Database = drizzle(sql);
  const store = createEventStore(db, bench);
  await store.register();
  console.log(settings.map((row) => `${row.name}=${row.setting}`).join(', '));

  // What one probe costs: round trips of log_head() against round trips of SELECT 1, one connection, 2,000 each.
  if (only.has('cost')) {
    const one = postgres(url, { max: 1, onnotice: () => {} });
    const time = async (run: () => Promise<unknown>) => {
      for (let i = 0; i < 200; i++) await run();
      const started = performance.now();
      for (let i = 0; i < 2000; i++) await run();
      return ((performance.now() - started) / 2000) * 1000;
    };
    // The server's CPU time, from its backend's /proc entry: what the machine's load does not inflate.
    const [backend] = await one<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    const cpuMs = () => {
      const fields = readFileSync(`/proc/${backend?.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in clock ticks of 10 ms
    };
    const cpuBefore = cpuMs();
    const probe = await time(() => one`SELECT * FROM log_head()`);
    const probeCpu = ((cpuMs() - cpuBefore) / 2200) * 1000;
    // The probe as it runs on an idle database: the snapshot has not moved, log_head() is not called.
    const oneDb = drizzle(one);
    const [first] = await headQuery(oneDb).execute({ previous: null });
    const idleQuery = headQuery(oneDb);
    const idleBefore = cpuMs();
    const idle = await time(() => idleQuery.execute({ previous: first?.snapshot ?? null }));
    const idleCpu = ((cpuMs() - idleBefore) / 2200) * 1000;
    const trivialBefore = cpuMs();
    const trivial = await time(() => one`SELECT 1`);
    const trivialCpu = ((cpuMs() - trivialBefore) / 2200) * 1000;
    console.log(
      `log_head(): ${probe.toFixed(0)} µs a round trip and ${probeCpu.toFixed(0)} µs of server CPU; the probe on ` +
        `an idle database ${idle.toFixed(0)} µs and ${idleCpu.toFixed(0)} µs; against ` +
        `${trivial.toFixed(0)} µs and ${trivialCpu.toFixed(0)} µs for SELECT 1; one every ${probeIntervalMs} ms ` +
        `is ${((idleCpu / 1000 / probeIntervalMs) * 100).toFixed(2)}% of one core idle, ` +
        `${((probeCpu / 1000 / probeIntervalMs) * 100).toFixed(2)}% when the head is read every time`,
    );
    await one.end();
  }

  // L1, as apps/bench measures it: appender and worker in this process, sharing its clock. Runs rotate the order.
  const l1 = { probe: [] as number[][], notify: [] as number[][], off: [] as number[][] };
  const orders = [
    ['probe', 'notify', 'off'],
    ['notify', 'off', 'probe'],
    ['off', 'probe', 'notify'],
  ] as const;
  for (let run = 0; only.has('l1') && run < runs; run++)
    for (const mode of orders[run % orders.length] ?? []) {
      if (mode === 'notify') await setWakeups(db, true);
      const committed = new Map<string, number>();
      const latencies: number[] = [];
      const workerSql = postgres(url, { max: 8, onnotice: () => {} });
      const projection = createProjection({
        db: drizzle(workerSql),
        view: `latency-${mode}-${randomUUID()}`,
        events: [bench],
        startAt: new Date(),
        pollIntervalMs: 500,
        wakeups: mode,
        handle(e) {
          const at = committed.get(e.eventId);
          if (at !== undefined) latencies.push(performance.now() - at);
        },
      });
      await projection.start();
      await pause(1000); // idle: the worker is at its polling ceiling
      const streams = Array.from({ length: 10 }, () => ({
        id: `l1-${randomUUID()}`,
        last: null as string | null,
      }));
      const total = seconds * 100;
      const start = performance.now();
      for (let n = 0; n < total; n++) {
        const wait = start + n * 10 - performance.now();
        if (wait > 0) await pause(wait);
        const stream = streams[n % streams.length] as { id: string; last: string | null };
        const eventId = randomUUID();
        await store.append(stream.id, [{ type: 'Happened', data: { n }, eventId }], {
          expectedLastEventId: stream.last,
        });
        committed.set(eventId, performance.now());
        stream.last = eventId;
      }
      const deadline = Date.now() + 5000;
      while (latencies.length < total && Date.now() < deadline) await pause(20);
      await projection.stop();
      await workerSql.end();
      if (mode === 'notify') await setWakeups(db, false);
      const sorted = latencies.sort((a, b) => a - b);
      console.log(
        `L1 ${mode.padEnd(6)} p50 ${percentile(sorted, 0.5).toFixed(1)} ms, p95 ${percentile(sorted, 0.95).toFixed(1)}, ` +
          `p99 ${percentile(sorted, 0.99).toFixed(1)}, max ${percentile(sorted, 1).toFixed(1)} (${sorted.length}/${total} events)`,
      );
      l1[mode].push([percentile(sorted, 0.5), percentile(sorted, 0.99)]);
    }
  for (const [mode, figures] of Object.entries(l1))
    if (figures.length > 0)
      console.log(
        `L1 ${mode.padEnd(6)} median of ${figures.length} runs: p50 ${median(figures.map(([p50]) => p50 ?? 0)).toFixed(1)} ms, ` +
          `p99 ${median(figures.map(([, p99]) => p99 ?? 0)).toFixed(1)} ms`,
      );

  // Idle load: ten workers of one process, on views of their own, nothing to handle, 1 s polling delay.
  const commits = async () => {
    const [row] = await sql<{ n: string }[]>`
      SELECT pg_stat_clear_snapshot(), xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()`;
    return Number(row?.n);
  };
  for (const mode of only.has('idle') ? (['probe', 'notify', 'off'] as const satisfies WakeupMode[]) : []) {
    const workerSql = postgres(url, { max: 4, onnotice: () => {} });
    const workerDb = drizzle(workerSql);
    const workers = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const view = `idle-${mode}-${i}-${randomUUID()}`;
        await registerView(db, view);
        const projection = createProjection({
          db: workerDb,
          view,
          events: [bench],
          pollIntervalMs: 1000,
          wakeups: mode,
          handle() {},
        });
        await projection.start();
        return projection;
      }),
    );
    await pause(4000); // backed off to the 1 s ceiling; the statistics of the start-up flushed
    const [before, at] = [await commits(), performance.now()];
    await pause(10_000);
    const perSecond = ((await commits()) - before - 2) / ((performance.now() - at) / 1000);
    console.log(`idle load, ten workers, ${mode.padEnd(6)} ${perSecond.toFixed(1)} statements/s`);
    await Promise.all(workers.map((w) => w.stop()));
    await workerSql.end();
  }

  // Append cost: 8 clients, one event per command, 1,000 streams each, alternating conditions.
  async function appendRate(condition: 'alone' | 'probe' | 'notify'): Promise<number> {
    const clients = postgres(url, { max: 8, onnotice: () => {} });
    const appendStore = createEventStore(drizzle(clients), bench);
    const probeSql = postgres(url, { max: 1, onnotice: () => {} });
    let stopWatching = async () => {};
    if (condition === 'probe') {
      const watch = await watchLogHead(drizzle(probeSql), () => {}, silentLogger);
      stopWatching = () => watch.close();
    }
    let unlisten = async () => {};
    if (condition === 'notify') {
      await setWakeups(db, true);
      const listening = await probeSql.listen('fstore_events', () => {});
      unlisten = () => listening.unlisten();
    }
    let appended = 0;
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const streams = Array.from({ length: 1000 }, () => ({
          id: randomUUID(),
          last: null as string | null,
        }));
        for (let n = 0; performance.now() < deadline; n++) {
          const stream = streams[n % streams.length] as { id: string; last: string | null };
          const [stored] = await appendStore.append(stream.id, [{ type: 'Happened', data: { n } }], {
            expectedLastEventId: stream.last,
          });
          stream.last = stored?.eventId ?? null;
          appended++;
        }
      }),
    );
    const rate = appended / ((performance.now() - started) / 1000);
    await stopWatching();
    await unlisten();
    if (condition === 'notify') await setWakeups(db, false);
    await probeSql.end();
    await clients.end();
    return rate;
  }
  const rates = { alone: [] as number[], probe: [] as number[], notify: [] as number[] };
  for (let run = 0; only.has('appends') && run < runs; run++) {
    for (const condition of run % 2 === 0 ? (['alone', 'probe'] as const) : (['probe', 'alone'] as const))
      rates[condition].push(await appendRate(condition));
    if (run < 2) rates.notify.push(await appendRate('notify'));
    console.log(
      `appends run ${run + 1}: alone ${rates.alone.at(-1)?.toFixed(0)}/s, probe ${rates.probe.at(-1)?.toFixed(0)}/s` +
        (run < 2 ? `, notify ${rates.notify.at(-1)?.toFixed(0)}/s` : ''),
    );
  }
  if (only.has('appends'))
    console.log(
      `appends, 8 clients, median of ${runs}: alone ${median(rates.alone).toFixed(0)}/s, ` +
        `with the probe ${median(rates.probe).toFixed(0)}/s (${(median(rates.probe) / median(rates.alone)).toFixed(3)}x), ` +
        `with NOTIFY ${median(rates.notify).toFixed(0)}/s (${(median(rates.notify) / median(rates.alone)).toFixed(3)}x)`,
    );
  await sql.end();
} finally {
  await server.destroy();
}
