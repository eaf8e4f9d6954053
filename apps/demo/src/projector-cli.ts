/**
 * The projection side as a process of its own: `pnpm --filter @fstore/demo projector` against DATABASE_URL.
 * Start several: they share the work of both views. Ctrl-C (or SIGTERM) stops it cleanly: in-flight batches
 * finish, leases are released, connections closed. Prints `ready`, then `stopped handled=N` at the end.
 *
 *   projector [--workers 1] [--verbose]
 */
import { parseArgs } from 'node:util';
import { createPostgresClient } from '@fstore/store/postgres';
import { jsonLogger } from '@fstore/stream';
import { drizzle } from 'drizzle-orm/postgres-js';
import { orderBoardWorker, restaurantMenusWorker } from './projections.js';
import { setUpDatabase } from './setup.js';

const { values } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: { workers: { type: 'string', default: '1' }, verbose: { type: 'boolean', default: false } },
});
const url = process.env.DATABASE_URL;
if (!url) {
  console.error('projector: set DATABASE_URL');
  process.exit(2);
}
await setUpDatabase(url);
const workers = Number(values.workers);
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
