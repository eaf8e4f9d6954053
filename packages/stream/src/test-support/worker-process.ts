/**
 * A projection worker in a process of its own, for the scenario suite (workers.scenario.ts,
 * database-restart.scenario.ts, faults.scenario.ts, stress.scenario.ts), which starts it with
 *
 *   node --conditions=@fstore/source --import <tsx> worker-process.ts
 *
 * and kills it, gently or not. It projects the Counter events of the database at DATABASE_URL into the read-model
 * tables `projected` (one row per event) and `counter_totals` (a fold per stream), created by the test, inside the
 * handler's transaction (projectCounterEvent).
 *
 * Environment: DATABASE_URL, VIEW, WORKER_NAME (written to projected.handled_by), CONCURRENCY (default 4),
 * LEASE_SECONDS (default 2), BATCH_SIZE (default 100), POLL_INTERVAL_MS (default 200), HANDLER_DELAY_MS (a pause
 * in the handler, to keep the worker busy; default 0), HANG_AT_OFFSET (block forever inside the handler for that
 * event, after printing `hanging <offset>`), BLOCK_AT_OFFSET and BLOCK_MS (a busy wait of BLOCK_MS inside the
 * handler of that event, after writing it: the event loop stops, so no lease renewal can run; prints
 * `blocking <offset>` before and `unblocked <offset>` after), STREAMS_PER_TRANSACTION (default 20), LOG_BATCHES (`0` keeps the worker on leases only;
 * default `1`).
 *
 * Standard output, one line each: `ready` once started, `handled <offset>` per event handled (not yet committed),
 * `hanging <offset>`, `blocking <offset>`, `unblocked <offset>`, `stopped` after a graceful stop. Logs go to standard error as JSON lines. SIGTERM or SIGINT
 * stop the projection gracefully and exit 0.
 */
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { jsonLogger } from '../observability.js';
import { createProjection } from '../projection.js';
import { counterEvents, projectCounterEvent } from './scenario-fixtures.js';

function numberFromEnv(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new Error(`${name}=${value} is not a number`);
  return parsed;
}

const url = process.env.DATABASE_URL;
const view = process.env.VIEW;
if (!url || !view) {
  process.stderr.write('worker-process: set DATABASE_URL and VIEW\n');
  process.exit(2);
}
const name = process.env.WORKER_NAME ?? `worker-${process.pid}`;
const concurrency = numberFromEnv('CONCURRENCY', 4);
const leaseSeconds = numberFromEnv('LEASE_SECONDS', 2);
const batchSize = numberFromEnv('BATCH_SIZE', 100);
const streamsPerTransaction = numberFromEnv('STREAMS_PER_TRANSACTION', 20);
const maxBatchSeconds = numberFromEnv('MAX_BATCH_SECONDS', 600);
const pollIntervalMs = numberFromEnv('POLL_INTERVAL_MS', 200);
const handlerDelayMs = numberFromEnv('HANDLER_DELAY_MS', 0);
const hangAtOffset = process.env.HANG_AT_OFFSET ? numberFromEnv('HANG_AT_OFFSET', 0) : undefined;
const blockAtOffset = process.env.BLOCK_AT_OFFSET ? numberFromEnv('BLOCK_AT_OFFSET', 0) : undefined;
const blockMs = numberFromEnv('BLOCK_MS', 0);
const logBatches = process.env.LOG_BATCHES !== '0';

const say = (line: string) => process.stdout.write(`${line}\n`);
const logger = {
  ...jsonLogger,
  // One line per poll would drown the rest.
  debug() {},
};

// concurrency transactions, plus lease polls, renewals and the LISTEN connection.
const client = postgres(url, { max: concurrency + 3, onnotice: () => {} });
const projection = createProjection({
  db: drizzle(client),
  view,
  events: [counterEvents],
  concurrency,
  leaseSeconds,
  maxBatchSeconds,
  batchSize,
  streamsPerTransaction,
  pollIntervalMs,
  logBatches,
  backoff: { initialMs: 50, maxMs: 1000 },
  logger,
  async handle(event, tx) {
    if (event.offset === hangAtOffset) {
      say(`hanging ${event.offset}`);
      await new Promise<never>(() => {});
    }
    await projectCounterEvent(tx, view, name, event);
    if (event.offset === blockAtOffset) {
      say(`blocking ${event.offset}`);
      const until = Date.now() + blockMs;
      while (Date.now() < until) {
        // A handler that hogs the CPU: no timer runs meanwhile, the lease renewal among them.
      }
      say(`unblocked ${event.offset}`);
    }
    if (handlerDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, handlerDelayMs));
    say(`handled ${event.offset}`);
  },
});

// A rejection nobody handled kills the process, as it would in production; first say which promise it was (a
// postgres.js query carries its SQL text), so that a death in the scenario logs names its cause.
process.on('unhandledRejection', (reason, promise) => {
  const query = promise as { strings?: readonly string[] };
  logger.error('worker-process: unhandled rejection', {
    error: reason instanceof Error ? (reason.stack ?? reason.message) : String(reason),
    query: query.strings ? query.strings.join('?') : undefined,
    promise: Object.prototype.toString.call(promise),
  });
  process.exit(1);
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info('worker-process: stopping', { signal, name });
  const started = Date.now();
  await projection.stop({ timeoutMs: 5_000 });
  const stopped = Date.now();
  await client.end({ timeout: 2 });
  logger.info('worker-process: stopped', { stopMs: stopped - started, endMs: Date.now() - stopped });
  say('stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  await projection.start();
} catch (error) {
  process.stderr.write(
    `worker-process: start failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
}
say('ready');
