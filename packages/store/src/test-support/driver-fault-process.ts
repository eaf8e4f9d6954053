/**
 * A process that meets a driver fault the way a host application would, so that a test can see whether the fault
 * ends it. Run with `node --import tsx --conditions=@fstore/source driver-fault-process.ts`, and:
 *
 *   POSTGRES_MODULE  file URL of the postgres.js entry every `import 'postgres'` of this process gets (the
 *                    unpatched copy, as in a host workspace that did not apply fstore's patch)
 *   CLIENT           plain: postgres(url, options) | recommended: createPostgresClient(url, options)
 *   SCENARIO         query: run one statement on a new connection
 *                    dead-transaction: in a transaction, have its backend terminated, then run another statement
 *                    of the transaction before anything reconnects the connection
 *   DATABASE_URL     where the client connects (a proxy, for the query scenario)
 *   ADMIN_URL        a direct URL for the dead-transaction scenario's terminations
 *
 * It prints one JSON line per step ({"step": …}) and ends with {"step":"alive"}. A fault that ends the process
 * shows as a {"step":"fatal"} line (with its origin: an unhandled rejection or an uncaught exception), a non-zero
 * exit code, the error on stderr, and no "alive".
 */
import { register } from 'node:module';

const { POSTGRES_MODULE, CLIENT, SCENARIO, DATABASE_URL, ADMIN_URL } = process.env;
if (!POSTGRES_MODULE || !DATABASE_URL) throw new Error('set POSTGRES_MODULE and DATABASE_URL');

const hooks = `export async function resolve(specifier, context, next) {
  return next(specifier === 'postgres' ? ${JSON.stringify(POSTGRES_MODULE)} : specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

type Sql = import('postgres').Sql;
const postgres = (await import('postgres')).default;
const { createPostgresClient } = await import('../postgres-client.js');

const print = (step: string, fields: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ step, ...fields }));
const codeOf = (error: unknown) => (error as { code?: string }).code ?? String(error);
// Observes, without handling it, what is about to end the process: origin 'unhandledRejection' or
// 'uncaughtException'.
process.on('uncaughtExceptionMonitor', (error, origin) => print('fatal', { origin, error: codeOf(error) }));
const options = { max: 1, onnotice: () => {}, connect_timeout: 5, backoff: () => 0 };
const sql: Sql =
  CLIENT === 'recommended' ? createPostgresClient(DATABASE_URL, options) : postgres(DATABASE_URL, options);

if (SCENARIO === 'query') {
  const outcome = await sql`SELECT 1 AS one`.then(
    (rows) => ({ rows: [...rows] }),
    (error: unknown) => ({ error: codeOf(error) }),
  );
  print('query', outcome);
} else if (SCENARIO === 'dead-transaction') {
  if (!ADMIN_URL) throw new Error('set ADMIN_URL');
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  let body: Promise<void> | undefined;
  const outcome = await sql
    .begin((tx) => {
      body = (async () => {
        const [session] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await admin`SELECT pg_terminate_backend(${session?.pid ?? 0})`;
        for (let i = 0; i < 1000; i++) {
          const [row] = await admin<{ alive: boolean }[]>`
            SELECT count(*) > 0 AS alive FROM pg_stat_activity WHERE pid = ${session?.pid ?? 0}`;
          if (!row?.alive) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        await new Promise((resolve) => setTimeout(resolve, 50)); // the client reads the close
        const later = await tx`SELECT 1 AS later`.then(
          () => 'ran',
          (error: unknown) => codeOf(error),
        );
        print('later statement', { outcome: later });
      })();
      return body;
    })
    .then(
      () => 'committed',
      (error: unknown) => codeOf(error),
    );
  print('transaction', { outcome });
  await body;
  await admin.end();
} else {
  throw new Error(`unknown SCENARIO ${SCENARIO}`);
}
await new Promise((resolve) => setTimeout(resolve, 200)); // anything left to escape does so now
print('alive');
await sql.end({ timeout: 1 });
