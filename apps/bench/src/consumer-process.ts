/**
 * One consuming process of the streaming benchmarks. Modes:
 * - project:  a projection worker (createProjection) with a no-op handler: lease a batch, handle, acknowledge;
 * - one-by-one: fstore-sql's loop, stream_events (one event per lease) then ack_event;
 * - scan:     the baseline, a plain indexed range scan of events in offset order (no leases, no acknowledgements);
 * - iterate:  store.iterate over one long stream, page by page.
 * It runs until the work is done or the deadline passes (or 'stop' arrives), then reports what it did, its CPU time
 * and its peak resident memory.
 */
import { createEventStore, defineEvents, event } from '@fstore/store';
import { createProjection } from '@fstore/stream';
import { sql as q } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';

export interface ConsumerInput {
  url: string;
  mode: 'project' | 'one-by-one' | 'scan' | 'iterate';
  view: string;
  durationMs: number;
  concurrency: number;
  batchSize: number;
  /** For iterate: the stream. */
  stream?: string;
  /** For project in deployed-worker.mjs: the polling ceiling (default: the library's). */
  pollIntervalMs?: number;
  /** For project in deployed-worker.mjs: how many projections (each on a view of its own, made by the worker). */
  projections?: number;
  wakeups?: boolean;
}

export interface ConsumerOutput {
  events: number;
  /** From the start of the work (`go`) to the last event consumed. */
  seconds: number;
  cpuMs: number;
  maxRssMb: number;
}

const input = JSON.parse(process.argv[2] ?? '{}') as ConsumerInput;
// Loaded: the parent's deadline for the work starts now, not when the process was forked (loading takes seconds
// on a loaded machine). The work starts when every process has loaded ('go'): a process that loaded first would
// otherwise work beside the others' loading, which the figure would count as the cost of more consumers.
process.send?.('ready');
if (process.send) await new Promise<void>((resolve) => process.once('message', () => resolve()));
const sql = postgres(input.url, { max: input.concurrency + 2, onnotice: () => {} });
const db = drizzle(sql);
const started = performance.now();
const deadline = Date.now() + input.durationMs;
let stopRequested = false;
process.on('message', (message) => {
  if (message === 'stop') stopRequested = true;
});
const done = () => stopRequested || Date.now() >= deadline;
let events = 0;
// When the last event was consumed: the figure's end. The parent learns that the work is done by polling the
// database every 100 ms and then says 'stop'; that lag is the harness's, and the scan baseline does not pay it.
let lastProgressAt = started;

if (input.mode === 'project') {
  const bench = defineEvents('Bench', { Happened: event<{ n: number }>() });
  const projection = createProjection({
    db,
    view: input.view,
    events: [bench],
    concurrency: input.concurrency,
    batchSize: input.batchSize,
    pollIntervalMs: 100,
    wakeups: input.wakeups ?? false,
    handle() {},
  });
  // The handled count moves when a transaction commits: sampled every 5 ms, the end is known to 5 ms.
  const sample = () => {
    if (projection.stats.handled === events) return;
    events = projection.stats.handled;
    lastProgressAt = performance.now();
  };
  await projection.start();
  while (!done()) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    sample();
  }
  await projection.stop();
  sample();
} else if (input.mode === 'one-by-one') {
  let empty = 0;
  while (!done() && empty < 3) {
    const [e] = await sql<
      { decider_id: string; offset: string }[]
    >`SELECT decider_id, "offset" FROM stream_events(${input.view}, 1, 60)`;
    if (!e) {
      empty++;
      continue;
    }
    empty = 0;
    await sql`SELECT 1 FROM ack_event(${input.view}, ${e.decider_id}, ${e.offset})`;
    events++;
    lastProgressAt = performance.now();
  }
} else if (input.mode === 'scan') {
  let after = 0;
  while (!done()) {
    const rows = await sql<
      { offset: string }[]
    >`SELECT * FROM events WHERE "offset" > ${after} ORDER BY "offset" LIMIT ${input.batchSize}`;
    if (rows.length === 0) break;
    events += rows.length;
    lastProgressAt = performance.now();
    after = Number(rows.at(-1)?.offset);
  }
} else {
  const ledger = defineEvents('Bench', { Happened: event<{ n: number }>() });
  const store = createEventStore(db, ledger, { pageSize: input.batchSize, validateOnLoad: false });
  for await (const _ of store.iterate(input.stream ?? '')) {
    events++;
    if (events % 10_000 === 0 && done()) break;
  }
  await db.execute(q`SELECT 1`);
  lastProgressAt = performance.now();
}

const seconds = (lastProgressAt - started) / 1000;
await sql.end({ timeout: 5 });
const cpu = process.cpuUsage();
const output: ConsumerOutput = {
  events,
  seconds,
  cpuMs: (cpu.user + cpu.system) / 1000,
  maxRssMb: process.resourceUsage().maxRSS / 1024,
};
process.send?.(output, () => process.exit(0));
