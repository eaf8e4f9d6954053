/**
 * postgres.js as this workspace runs it (patches/postgres@3.4.9.patch), when the database drops a session:
 *
 * - A connection dropped while it is still starting up must fail (or retry) the query that opened it, and nothing
 *   else. postgres.js 3.4.9 runs an internal query on every new connection (the array types, `fetch_types`) and
 *   drops its promise: if the connection dies during it, the error escapes as an unhandled rejection, which ends a
 *   Node.js process (porsager/postgres#1192, #1205, #1223). A projection worker died of it in CI when the database
 *   was restarted. A small proxy between the client and the test database finds that internal query on the wire
 *   and, at that moment, either goes away for good (the database stopped) or has the backend terminated.
 * - A transaction whose session is terminated must fail as a whole. postgres.js 3.4.9 ran the transaction's later
 *   statements on the same connection once the pool had reconnected it, outside any transaction, where each
 *   committed on its own (porsager/postgres#1215, #1216): a projection batch could then acknowledge events whose
 *   read-model writes had rolled back.
 *
 * A host application that takes fstore's packages in runs postgres.js without this patch: postgres-client.test.ts
 * shows these faults on that copy, and what fstore's recommended client (`@fstore/store/postgres`) does about them.
 */
import { createTestDatabase } from '@fstore/test-harness';
import postgres from 'postgres';
import { afterAll, afterEach, expect, test } from 'vitest';
import { createPostgresClient, TransactionClosedError } from './postgres-client.js';
import { startStartupFaultProxy } from './test-support/startup-fault-proxy.js';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

/** What reaches process.on('unhandledRejection') during a test. */
let unhandled: unknown[] = [];
const collect = (reason: unknown) => unhandled.push(reason);
process.on('unhandledRejection', collect);
afterAll(() => {
  process.off('unhandledRejection', collect);
});
afterEach(() => {
  unhandled = [];
});

/** Lets rejections that nobody handled reach process.on('unhandledRejection'). */
const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

test('the database goes away while a new connection fetches its array types: the query fails with the connection error, and nothing else escapes', async () => {
  const proxy = await startStartupFaultProxy(database.url, ({ client, upstream, stopListening }) => {
    stopListening(); // the reconnection is refused, as by a stopped server
    client.destroy();
    upstream.destroy();
    return 'drop';
  });
  const sql = postgres(proxy.url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  try {
    const failure = await sql`SELECT 1 AS one`.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(proxy.firstStatements).toEqual([{ pid: expect.any(Number), typesQuery: true }]);
    expect(failure).toMatchObject({ code: 'ECONNREFUSED' });
    await settle();
    expect(unhandled).toEqual([]);
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
  }
});

test('the backend is terminated while a new connection fetches its array types: postgres.js reconnects and the query succeeds, with no error from the dead backend', async () => {
  const admin = database.connect({ max: 1 });
  const terminated: Promise<unknown>[] = [];
  const proxy = await startStartupFaultProxy(database.url, ({ pid }) => {
    // The first connection only: its backend reports 57P01 (as in a fast shutdown) and closes.
    if (terminated.length > 0) return 'forward';
    terminated.push(admin`SELECT pg_terminate_backend(${pid})`.then((rows) => [...rows]));
    return 'drop';
  });
  const sql = postgres(proxy.url, { max: 1, onnotice: () => {}, connect_timeout: 5, backoff: () => 0 });
  try {
    const rows = await sql`SELECT 1 AS one`;
    expect(await Promise.all(terminated)).toEqual([[{ pg_terminate_backend: true }]]);
    expect(proxy.firstStatements.map((statement) => statement.typesQuery)).toEqual([true, true]);
    expect(rows).toEqual([{ one: 1 }]);
    await settle();
    expect(unhandled).toEqual([]);
  } finally {
    await sql.end({ timeout: 1 });
    await proxy.close();
  }
});

test.each([
  { client: 'postgres(url)', connect: (url: string) => postgres(url, { max: 1, onnotice: () => {} }) },
  // Both guards at once, as in this workspace's own processes: the patch's, and the recommended client's, which
  // stops the statements before they reach the driver.
  {
    client: 'createPostgresClient(url)',
    connect: (url: string) => createPostgresClient(url, { max: 1, onnotice: () => {} }),
  },
])(
  'a transaction whose session is terminated while idle in it ($client): its later statements fail, and none commits on the reconnected session',
  async ({ client, connect }) => {
    await database.sql`CREATE TABLE IF NOT EXISTS driver_transaction_rows (n int NOT NULL)`;
    await database.sql`TRUNCATE driver_transaction_rows`;
    // One connection: the statement the pool runs after the termination reconnects that very connection.
    const sql = connect(database.url);
    const later: unknown[] = [];
    // The transaction's promise settles when its session goes; its body runs on: wait for both.
    let body: Promise<void> | undefined;
    try {
      const outcome = await sql
        .begin((tx) => {
          body = statements(tx);
          return body;
        })
        .then(
          () => 'committed',
          (error: { code?: string }) => error.code,
        );
      await body; // its own statements are caught one by one: it completes
      expect(outcome).toBe('CONNECTION_CLOSED');
      expect(later.map((result) => (result as { code?: string }).code)).toEqual([
        'CONNECTION_CLOSED',
        'CONNECTION_CLOSED',
      ]);
      for (const error of later) {
        expect(error instanceof TransactionClosedError).toBe(client === 'createPostgresClient(url)');
      }
      expect(await database.sql`SELECT n FROM driver_transaction_rows ORDER BY n`).toEqual([]);
    } finally {
      await sql.end({ timeout: 1 });
    }

    async function statements(tx: postgres.TransactionSql) {
      await tx`INSERT INTO driver_transaction_rows VALUES (1)`;
      const [session] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      await database.sql`SELECT pg_terminate_backend(${session?.pid ?? 0})`;
      await waitUntilSessionGone(session?.pid ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the client reads the close
      expect(await sql`SELECT 1 AS reconnected`).toEqual([{ reconnected: 1 }]);
      for (const n of [2, 3]) {
        later.push(
          await tx`INSERT INTO driver_transaction_rows VALUES (${n})`.catch((error: unknown) => error),
        );
      }
    }
  },
);

/** Resolves once the backend `pid` has exited (it no longer shows in pg_stat_activity); fails after 10 s. */
async function waitUntilSessionGone(pid: number) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const [row] = await database.sql<{ alive: boolean }[]>`
      SELECT count(*) > 0 AS alive FROM pg_stat_activity WHERE pid = ${pid}`;
    if (!row?.alive) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`backend ${pid} did not exit`);
}
