/**
 * The projection side as a process of its own: `pnpm --filter @fstore/demo projector` against DATABASE_URL.
 * Start several: they share the work of both views. Ctrl-C (or SIGTERM) stops it cleanly: in-flight batches
 * finish, leases are released, connections closed. Prints `ready`, then `stopped handled=N` at the end.
 *
 *   projector [--workers 1] [--verbose]
 *
 * Exit codes: 0 stopped cleanly, 1 it could not run (one line on stderr says why), 2 the command line is wrong.
 */
import { parseArgs } from 'node:util';
import { createPostgresClient } from '@fstore/store/postgres';
import { jsonLogger, UsageError } from '@fstore/stream';
import { drizzle } from 'drizzle-orm/postgres-js';
import { failWithOneLine, wholeNumber } from './command-line.js';
import { orderBoardWorker, restaurantMenusWorker } from './projections.js';
import { setUpDatabase } from './setup.js';

const usage = `usage: pnpm --filter @fstore/demo projector [--workers 1] [--verbose]

The demo's projection side against the database at DATABASE_URL (it runs fstore's migrations there first): workers
that keep the two read models up to date. Start several: they share the work. Ctrl-C stops it cleanly.

  --workers N   projection workers per view (default 1)
  --verbose     log what the workers do, as JSON lines
  -h, --help    this text`;
failWithOneLine('projector', 'pnpm --filter @fstore/demo projector --help');

const { values } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    workers: { type: 'string', default: '1' },
    verbose: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const workers = wholeNumber('workers', values.workers);
const url = process.env.DATABASE_URL;
if (!url) throw new UsageError('set DATABASE_URL to the database to run on');
await setUpDatabase(url);
const sql = createPostgresClient(url, { max: 2 + workers * 8, onnotice: () => {} });
const db = drizzle(sql);
const logger = values.verbose ? jsonLogger : undefined;
const projections = Array.from({ length: workers }, () => [
  restaurantMenusWorker({ db, ...(logger ? { logger } : {}) }),
  orderBoardWorker({ db, ...(logger ? { logger } : {}) }),
]).flat();
await Promise.all(projections.map((projection) => projection.start()));
console.log('ready');

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.all(projections.map((projection) => projection.stop()));
  await sql.end({ timeout: 5 });
  const handled = projections.reduce((sum, projection) => sum + projection.stats.handled, 0);
  console.log(`stopped handled=${handled}`);
  process.exit(0);
};
process.on('SIGINT', stop).on('SIGTERM', stop);
