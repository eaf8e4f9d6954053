/**
 * `pnpm demo`: the whole loop, for real. An embedded PostgreSQL (or DATABASE_URL), fstore's migrations, concurrent
 * command producers running restaurant and order deciders through the command handler (colliding, retrying, some
 * commands rejected), projection workers maintaining two read models, live progress, and a final check that every
 * event was projected exactly once and in stream order.
 *
 *   pnpm demo [--producers 4] [--workers 2] [--orders 1000] [--restaurants 3] [--keep] [--trace] [--dashboard]
 *
 * Exit codes: 0 all checks passed, 1 a check failed or the demo could not run (one line on stderr says why),
 * 2 the command line is wrong, 130 interrupted.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { createCommandHandler, createEventStore, type Database } from '@fstore/store';
import { createPostgresClient } from '@fstore/store/postgres';
import { type Projection, reportFailure, viewStatus, waitForView } from '@fstore/stream';
import { startDashboard } from '@fstore/stream/dashboard';
import { asc, eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { type CheckResult, check } from './check.js';
import { wholeNumber } from './command-line.js';
import { openDatabase } from './database.js';
import { restaurantDecider, restaurantEvents } from './domain/restaurant.js';
import { newStats, type ProducerStats, produce } from './producers.js';
import { startProgress } from './progress.js';
import { orderBoardWorker, readModelResets, restaurantMenusWorker } from './projections.js';
import { orders, restaurants } from './read-model.js';
import { setUpDatabase, views } from './setup.js';
import { startTracing } from './trace.js';

export interface DemoOptions {
  url: string;
  producers: number;
  /** Projection workers per view. */
  workers: number;
  orders: number;
  restaurants: number;
  /** Where progress and the summary go. */
  out?: NodeJS.WriteStream;
  signal?: AbortSignal;
  /** Called once the schema is migrated and the workers have registered their views, before any order. */
  onStarted?(): Promise<void>;
}

export interface DemoResult {
  stats: ProducerStats;
  check: CheckResult;
  run: string;
  /** Ctrl-C (or the signal) stopped it before the end: no check was made. */
  interrupted: boolean;
}

/** Runs the demo against a database and returns its figures and final check. */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const out = options.out ?? process.stdout;
  const run = `run${randomBytes(4).toString('hex')}`;
  await setUpDatabase(options.url);
  const sql = createPostgresClient(options.url, { max: 4 + options.producers, onnotice: () => {} });
  const workersSql = createPostgresClient(options.url, {
    max: 2 + options.workers * 2 * 4,
    onnotice: () => {},
  });
  const db = drizzle(sql);
  const workersDb = drizzle(workersSql);
  const workers: Projection[] = [];
  for (let w = 0; w < options.workers; w++) {
    workers.push(restaurantMenusWorker({ db: workersDb }), orderBoardWorker({ db: workersDb }));
  }
  const stats = newStats();
  try {
    await Promise.all(workers.map((worker) => worker.start()));
    await options.onStarted?.();
    const progress = startProgress(db, stats, out);
    try {
      await produce({
        db,
        producers: options.producers,
        orders: options.orders,
        restaurants: options.restaurants,
        run,
        stats,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      await caughtUp(db, options.signal);
    } finally {
      await progress.stop();
    }
    const ownWrite = options.signal?.aborted ? undefined : await readYourWrite(db, run, stats);
    await Promise.all(workers.map((worker) => worker.stop()));
    if (options.signal?.aborted || !ownWrite) {
      out.write(`interrupted after ${stats.commands} commands; the workers stopped cleanly\n`);
      return { stats, check: { ok: false, lines: [] }, run, interrupted: true };
    }
    await printReadModels(db, run, out);
    const result = await check(db, run, stats);
    result.lines.push(ownWrite.line);
    result.ok &&= ownWrite.ok;
    out.write(`\n${result.lines.join('\n')}\n`);
    return { stats, check: result, run, interrupted: false };
  } finally {
    await Promise.all(workers.map((worker) => worker.stop()));
    await Promise.all([sql.end({ timeout: 5 }), workersSql.end({ timeout: 5 })]);
  }
}

/**
 * Read-your-writes: one more command (a new menu for the first restaurant), then a read of the read model once
 * waitForView says the view has handled it. The read finds the new menu, however far behind the workers are.
 */
async function readYourWrite(
  db: Database,
  run: string,
  stats: ProducerStats,
): Promise<{ ok: boolean; line: string }> {
  const id = `${run}-restaurant-0`;
  const menu = Array.from({ length: 9 }, (_, d) => ({
    id: `dish-${d + 1}`,
    name: `new dish ${d + 1}`,
    price: 9 + d,
  }));
  const handle = createCommandHandler(createEventStore(db, restaurantEvents), restaurantDecider);
  const started = performance.now();
  const { position, events } = await handle(id, { kind: 'ChangeMenu', menu });
  stats.commands++;
  stats.eventsAppended += events.length;
  if (position) await waitForView(db, views.restaurants, position);
  const waited = Math.round(performance.now() - started);
  const [row] = await db.select({ menu: restaurants.menu }).from(restaurants).where(eq(restaurants.id, id));
  const ok = row?.menu.length === menu.length;
  return {
    ok,
    line: `${ok ? 'ok  ' : 'FAIL'} read-your-writes: a menu change, read back from restaurant-menus once waitForView resolved (${waited} ms after the command), holds ${row?.menu.length ?? 0} of ${menu.length} dishes`,
  };
}

async function caughtUp(db: Database, signal?: AbortSignal) {
  const deadline = Date.now() + 60_000;
  while (!signal?.aborted && Date.now() < deadline) {
    const status = (await viewStatus(db)).filter(
      (s) => s.view === views.restaurants || s.view === views.orders,
    );
    if (status.length === 2 && status.every((s) => s.eventsBehind === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function printReadModels(db: Database, run: string, out: NodeJS.WriteStream) {
  const mine = (id: string) => id.startsWith(`${run}-`);
  const menus = (await db.select().from(restaurants).orderBy(asc(restaurants.id))).filter((r) => mine(r.id));
  const board = (await db.select().from(orders)).filter((o) => mine(o.id));
  out.write('\nrestaurant-menus (read model)\n');
  for (const r of menus)
    out.write(
      `  ${r.name.padEnd(14)} ${String(r.menu.length).padStart(2)} dishes  ${String(r.ordersPlaced).padStart(4)} orders\n`,
    );
  const prepared = board.filter((o) => o.status === 'prepared').length;
  out.write(
    `order-board (read model)\n  ${board.length} orders: ${prepared} prepared, ${board.length - prepared} waiting\n`,
  );
}

const usage = `usage: pnpm demo [--producers 4] [--workers 2] [--orders 1000] [--restaurants 3] [--keep] [--trace]
                 [--dashboard]

Restaurant orders through fstore, end to end: command producers, projection workers, live progress, and a final
check that every event was projected exactly once, in order. It runs on the PostgreSQL server at DATABASE_URL when
that is set (its database gets fstore's migrations), else on a throwaway embedded PostgreSQL.

  --producers N     concurrent command producers (default 4)
  --workers N       projection workers per view (default 2)
  --orders N        orders to place (default 1000)
  --restaurants N   restaurants (default 3)
  --keep            leave the embedded PostgreSQL running at the end, and say how to reach and stop it
  --trace           trace with OpenTelemetry (in memory) and print the span tree of one order: its commands, and
                    the projection handlers each append reached
  --dashboard       serve fstore's dashboard (fstore dashboard) on 127.0.0.1 while the demo runs, and print its
                    address: every view's lag, throughput and parked events, live, in a browser
  -h, --help        this text`;

/** The database the demo works on, once known: failure lines name its server, never its password. */
let databaseUrl = process.env.DATABASE_URL;

async function main() {
  const { values } = parseArgs({
    // `pnpm demo -- --orders 50` passes the separator through.
    args: process.argv.slice(2).filter((arg) => arg !== '--'),
    options: {
      producers: { type: 'string', default: '4' },
      workers: { type: 'string', default: '2' },
      orders: { type: 'string', default: '1000' },
      restaurants: { type: 'string', default: '3' },
      keep: { type: 'boolean', default: false },
      trace: { type: 'boolean', default: false },
      dashboard: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const options = {
    producers: wholeNumber('producers', values.producers),
    workers: wholeNumber('workers', values.workers),
    orders: wholeNumber('orders', values.orders),
    restaurants: wholeNumber('restaurants', values.restaurants),
  };
  const interrupted = new AbortController();
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping: finishing in-flight work, releasing leases…\n');
    interrupted.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);

  const started = Date.now();
  const tracing = values.trace ? startTracing() : undefined;
  const database = await openDatabase();
  databaseUrl = database.url;
  console.log(
    `fstore demo on ${database.description}: ${options.producers} producers, ${options.workers} workers per view, ${options.orders} orders`,
  );
  let dashboard: Awaited<ReturnType<typeof serveDashboard>> | undefined;
  try {
    const result = await runDemo({
      url: database.url,
      ...options,
      signal: interrupted.signal,
      // Once the schema and the views exist, so that its first look finds them.
      ...(values.dashboard
        ? {
            onStarted: async () => {
              dashboard = await serveDashboard(database.url);
            },
          }
        : {}),
    });
    if (result.interrupted) return 130;
    if (tracing) console.log(`\n${tracing.orderTree().join('\n')}`);
    console.log(
      `\n${result.check.ok ? 'all checks passed' : 'SOME CHECKS FAILED'} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    if (values.keep && database.embedded) {
      const pid = database.keep();
      console.log(
        `\nthe embedded database keeps running:\n  psql ${database.url}\nstop it with: kill ${pid}`,
      );
    }
    return result.check.ok ? 0 : 1;
  } finally {
    await dashboard?.close();
    await tracing?.stop();
    if (!values.keep) await database.stop();
  }
}

/**
 * fstore's dashboard on this database, on a free port of 127.0.0.1, with its actions on (it is a demo): retry and
 * discard, and Rebuild for the two views, which it knows how to empty.
 */
async function serveDashboard(url: string) {
  const client = createPostgresClient(url, { max: 4, onnotice: () => {} });
  const served = await startDashboard({
    db: drizzle(client),
    port: 0,
    actions: true,
    rebuilds: readModelResets,
  });
  console.log(`dashboard: ${served.url} (up while the demo runs)`);
  return {
    async close() {
      await served.close();
      await client.end({ timeout: 5 });
    },
  };
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) =>
      process.exit(reportFailure('demo', error, { url: databaseUrl, help: 'pnpm demo --help' })),
  );
}
