// @ts-check
/**
 * M1's processes as they are deployed: plain Node.js, no TypeScript loader, running the built packages (their
 * dist, as npm installs them) with the postgres.js client fstore recommends. Modes (see consumer-process.ts):
 * - project: a projection worker with a no-op handler streams the view's backlog;
 * - iterate: store.iterate over one long stream, page by page;
 * - scan: no fstore at all, the driver alone reading the log in pages of batchSize (the reference: what a Node.js
 *   process streaming these rows needs whatever the library).
 * Same messages as consumer-process.ts: 'ready' once loaded, 'go' to start, then its ConsumerOutput; 'stop' ends it
 * early.
 */
import postgres from 'postgres';

/** @type {import('./consumer-process.js').ConsumerInput} */
const input = JSON.parse(process.argv[2] ?? '{}');
// The scan loads the driver alone, so that its figure is the floor that the library's own modules add to.
const fstore =
  input.mode === 'scan'
    ? undefined
    : {
        ...(await import('@fstore/store')),
        ...(await import('@fstore/store/postgres')),
        ...(await import('@fstore/stream')),
        ...(await import('drizzle-orm/postgres-js')),
      };
process.send?.('ready');
if (process.send) await new Promise((resolve) => process.once('message', resolve));
// FSTORE_BENCH_MEMORY_TRACE=1: where the memory is, every half second, on stderr.
if (process.env.FSTORE_BENCH_MEMORY_TRACE) {
  const mb = (bytes) => (bytes / 1048576).toFixed(1);
  setInterval(() => {
    const m = process.memoryUsage();
    console.error(
      `rss ${mb(m.rss)} heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} external ${mb(m.external)} arrayBuffers ${mb(m.arrayBuffers)}`,
    );
  }, 500).unref();
}
const options = {
  max: input.concurrency + 2,
  onnotice: () => {},
  ...(process.env.FSTORE_BENCH_NO_PREPARE ? { prepare: false } : {}),
};
const sql = fstore ? fstore.createPostgresClient(input.url, options) : postgres(input.url, options);
const started = performance.now();
const deadline = Date.now() + input.durationMs;
let stopRequested = false;
process.on('message', (message) => {
  if (message === 'stop') stopRequested = true;
});
const done = () => stopRequested || Date.now() >= deadline;
let events = 0;

if (input.mode === 'project' && fstore) {
  const db = fstore.drizzle(sql);
  const bench = fstore.defineEvents('Bench', { Happened: fstore.event() });
  // Several projections share this process's database: one view each (made by the worker) beyond the first.
  const projections = Array.from({ length: input.projections ?? 1 }, (_, index) =>
    fstore.createProjection({
      db,
      view: index === 0 && !input.projections ? input.view : `${input.view}-${process.pid}-${index}`,
      events: [bench],
      concurrency: input.concurrency,
      batchSize: input.batchSize,
      ...(input.pollIntervalMs === undefined ? {} : { pollIntervalMs: input.pollIntervalMs }),
      handle() {},
    }),
  );
  for (const projection of projections) await projection.start();
  while (!done()) await new Promise((resolve) => setTimeout(resolve, 20));
  for (const projection of projections) await projection.stop();
  events = projections.reduce((sum, projection) => sum + projection.stats.handled, 0);
} else if (input.mode === 'iterate' && fstore) {
  const db = fstore.drizzle(sql);
  const bench = fstore.defineEvents('Bench', { Happened: fstore.event() });
  const store = fstore.createEventStore(db, bench, { pageSize: input.batchSize, validateOnLoad: false });
  for await (const _ of store.iterate(input.stream ?? '')) {
    events++;
    if (events % 10_000 === 0 && done()) break;
  }
} else if (input.mode === 'scan') {
  let after = 0;
  while (!done()) {
    const rows =
      await sql`SELECT * FROM events WHERE "offset" > ${after} ORDER BY "offset" LIMIT ${input.batchSize}`;
    if (rows.length === 0) break;
    events += rows.length;
    after = Number(rows.at(-1)?.offset);
  }
} else {
  throw new Error(`deployed-worker: mode ${input.mode} runs in consumer-process.ts`);
}

const seconds = (performance.now() - started) / 1000;
await sql.end({ timeout: 5 });
const cpu = process.cpuUsage();
/** @type {import('./consumer-process.js').ConsumerOutput} */
const output = {
  events,
  seconds,
  cpuMs: (cpu.user + cpu.system) / 1000,
  maxRssMb: process.resourceUsage().maxRSS / 1024,
};
process.send?.(output, () => process.exit(0));
