/**
 * `@fstore/store/postgres` on the postgres.js a host gets: version 3.4.9 without this workspace's patch. The copy is
 * installed from the pnpm store into a throwaway folder (`pnpm install --offline`), as a host's install would.
 *
 * What the patch fixes, and what a plain client does without it:
 * - a connection that dies while postgres.js fetches its array types on connect ends the process with an unhandled
 *   rejection (porsager/postgres#1192, #1205, #1223);
 * - a transaction whose session died runs its later statements elsewhere: on the reconnected connection, where each
 *   commits on its own (#1215, #1216), or on no socket at all, which throws from a timer and ends the process
 *   (#1154, #1208).
 * What fstore's recommended client (createPostgresClient: no array-types query, guarded transactions) does instead,
 * on that same unpatched driver: the process lives, and no statement of a dead transaction runs.
 *
 * Faults that end a process are met in a child process (test-support/driver-fault-process.ts); the rest here.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { migrate } from '@fstore/schema';
import { createTestDatabase } from '@fstore/test-harness';
import { sql as drizzleSql } from 'drizzle-orm';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/postgres-js';
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createEventStore } from './event-store.js';
import {
  createPostgresClient,
  guardTransactions,
  recommendedPostgresOptions,
  TransactionClosedError,
} from './postgres-client.js';
import { describeEventStore } from './test-support/event-store.suite.js';
import { orderEvents } from './test-support/orders.js';
import { startStartupFaultProxy } from './test-support/startup-fault-proxy.js';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

/** postgres.js 3.4.9 as published, installed the way a host's pnpm would, outside this workspace. */
let unpatched: { dir: string; postgres: typeof postgres; esmEntry: string };
beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'fstore-unpatched-postgres-'));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'host', private: true, dependencies: { postgres: '3.4.9' } }),
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_|^pnpm_/i.test(key)));
  const install = spawnSync('pnpm', ['install', '--offline', '--ignore-workspace'], { cwd: dir, env });
  if (install.status !== 0)
    throw new Error(`pnpm install --offline failed:\n${install.stdout}\n${install.stderr}`);
  const entry = realpathSync(join(dir, 'node_modules/postgres/src/index.js'));
  unpatched = {
    dir,
    postgres: createRequire(join(dir, 'package.json'))('postgres') as typeof postgres,
    esmEntry: pathToFileURL(entry).href,
  };
});
afterAll(() => {
  if (unpatched) rmSync(unpatched.dir, { recursive: true, force: true });
});

test('the copy under test is postgres.js 3.4.9 without the patch', () => {
  const packageDir = join(fileURLToPath(unpatched.esmEntry), '../..');
  expect(JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')).version).toBe('3.4.9');
  for (const file of ['src/index.js', 'src/connection.js', 'cjs/src/index.js', 'cjs/src/connection.js']) {
    expect(readFileSync(join(packageDir, file), 'utf8')).not.toContain('fstore patch');
  }
  // This workspace's own copy is patched.
  const own = createRequire(import.meta.url).resolve('postgres');
  expect(readFileSync(own, 'utf8')).toContain('fstore patch');
});

interface ProcessOutcome {
  code: number | null;
  steps: Record<string, unknown>[];
  stderr: string;
}

/** Runs test-support/driver-fault-process.ts on the unpatched driver. */
async function runFaultProcess(env: {
  CLIENT: 'plain' | 'recommended';
  SCENARIO: 'query' | 'dead-transaction';
  DATABASE_URL: string;
  ADMIN_URL?: string;
}): Promise<ProcessOutcome> {
  const script = fileURLToPath(new URL('./test-support/driver-fault-process.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=@fstore/source', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    env: { ...process.env, ...env, POSTGRES_MODULE: unpatched.esmEntry },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const steps = stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { code, steps, stderr };
}

describe('a connection dies while it starts up', () => {
  const goneForGood = () =>
    startStartupFaultProxy(database.url, ({ client, upstream, stopListening }) => {
      stopListening(); // reconnecting is refused, as by a stopped server
      client.destroy();
      upstream.destroy();
      return 'drop';
    });

  test('unpatched, a plain client: the array-types query fails with nobody to catch it, and the process ends', async () => {
    const proxy = await goneForGood();
    try {
      const outcome = await runFaultProcess({ CLIENT: 'plain', SCENARIO: 'query', DATABASE_URL: proxy.url });
      expect(proxy.firstStatements).toEqual([{ pid: expect.any(Number), typesQuery: true }]);
      // The statement that opened the connection fails as it should; the types query's failure escapes.
      expect(outcome.steps).toEqual([
        { step: 'query', error: 'ECONNREFUSED' },
        { step: 'fatal', origin: 'unhandledRejection', error: 'ECONNREFUSED' },
      ]);
      expect(outcome.code).not.toBe(0);
    } finally {
      await proxy.close();
    }
  });

  test('unpatched, the recommended client: there is no array-types query; the statement that opened the connection fails, and the process lives', async () => {
    const proxy = await goneForGood();
    try {
      const outcome = await runFaultProcess({
        CLIENT: 'recommended',
        SCENARIO: 'query',
        DATABASE_URL: proxy.url,
      });
      expect(proxy.firstStatements).toEqual([{ pid: expect.any(Number), typesQuery: false }]);
      expect(outcome.steps).toEqual([{ step: 'query', error: 'CONNECTION_CLOSED' }, { step: 'alive' }]);
      expect(outcome.code).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  const terminatedOnce = (admin: postgres.Sql) => {
    const terminated: Promise<unknown>[] = [];
    return {
      terminated,
      start: () =>
        startStartupFaultProxy(database.url, ({ pid }) => {
          // The first connection only: its backend reports 57P01 (as in a fast shutdown) and closes.
          if (terminated.length > 0) return 'forward';
          terminated.push(admin`SELECT pg_terminate_backend(${pid})`.then((rows) => [...rows]));
          return 'drop';
        }),
    };
  };

  test('unpatched, a plain client: the backend is terminated during the array-types query, and the process ends', async () => {
    const admin = database.connect({ max: 1 });
    const { terminated, start } = terminatedOnce(admin);
    const proxy = await start();
    try {
      const outcome = await runFaultProcess({ CLIENT: 'plain', SCENARIO: 'query', DATABASE_URL: proxy.url });
      expect(await Promise.all(terminated)).toEqual([[{ pg_terminate_backend: true }]]);
      expect(proxy.firstStatements[0]).toEqual({ pid: expect.any(Number), typesQuery: true });
      expect(outcome.steps).toContainEqual({ step: 'fatal', origin: 'unhandledRejection', error: '57P01' });
      expect(outcome.steps).not.toContainEqual({ step: 'alive' });
      expect(outcome.code).not.toBe(0);
    } finally {
      await proxy.close();
      await admin.end();
    }
  });

  test('unpatched, the recommended client: the backend is terminated during the first statement, which fails, and the process lives', async () => {
    const admin = database.connect({ max: 1 });
    const { terminated, start } = terminatedOnce(admin);
    const proxy = await start();
    try {
      const outcome = await runFaultProcess({
        CLIENT: 'recommended',
        SCENARIO: 'query',
        DATABASE_URL: proxy.url,
      });
      expect(await Promise.all(terminated)).toEqual([[{ pg_terminate_backend: true }]]);
      expect(proxy.firstStatements).toEqual([{ pid: expect.any(Number), typesQuery: false }]);
      expect(outcome.steps).toEqual([{ step: 'query', error: 'CONNECTION_CLOSED' }, { step: 'alive' }]);
      expect(outcome.code).toBe(0);
    } finally {
      await proxy.close();
      await admin.end();
    }
  });
});

describe("a transaction's session is terminated, and the transaction runs another statement before anything reconnects", () => {
  test('unpatched, a plain client: the statement is written to a connection with no socket, and the process ends', async () => {
    const outcome = await runFaultProcess({
      CLIENT: 'plain',
      SCENARIO: 'dead-transaction',
      DATABASE_URL: database.url,
      ADMIN_URL: database.url,
    });
    expect(outcome.steps).toEqual([
      { step: 'transaction', outcome: 'CONNECTION_CLOSED' },
      { step: 'fatal', origin: 'uncaughtException', error: expect.stringContaining('TypeError') },
    ]);
    expect(outcome.stderr).toContain("Cannot read properties of null (reading 'write')");
    expect(outcome.stderr).toContain('nextWrite');
    expect(outcome.code).not.toBe(0);
  });

  test('unpatched, the recommended client: the statement fails unsent, the transaction fails, and the process lives', async () => {
    const outcome = await runFaultProcess({
      CLIENT: 'recommended',
      SCENARIO: 'dead-transaction',
      DATABASE_URL: database.url,
      ADMIN_URL: database.url,
    });
    expect(outcome.steps).toEqual([
      { step: 'transaction', outcome: 'CONNECTION_CLOSED' },
      { step: 'later statement', outcome: 'CONNECTION_CLOSED' },
      { step: 'alive' },
    ]);
    expect(outcome.code).toBe(0);
  });
});

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

/** Terminates the session `pid`, waits until it is gone and the client has read the close. */
async function terminate(pid: number) {
  await database.sql`SELECT pg_terminate_backend(${pid})`;
  await waitUntilSessionGone(pid);
  await new Promise((resolve) => setTimeout(resolve, 50));
}

describe("a transaction's session is terminated while idle in it, and the pool reconnects before its next statements", () => {
  const table = 'driver_dead_transaction_rows';
  beforeAll(async () => {
    await database.sql.unsafe(`CREATE TABLE ${table} (n int NOT NULL)`);
  });

  async function deadTransaction(sql: postgres.Sql) {
    await database.sql.unsafe(`TRUNCATE ${table}`);
    const later: unknown[] = [];
    // The transaction's promise settles when its session goes; its body runs on: wait for both.
    let body: Promise<void> | undefined;
    const outcome = await sql
      .begin((tx) => {
        body = (async () => {
          await tx.unsafe(`INSERT INTO ${table} VALUES (1)`);
          const [session] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
          await terminate(session?.pid ?? 0);
          // One connection: this statement reconnects the very connection the transaction had.
          expect(await sql`SELECT 1 AS reconnected`).toEqual([{ reconnected: 1 }]);
          for (const n of [2, 3]) {
            later.push(
              await tx.unsafe(`INSERT INTO ${table} VALUES ($1)`, [n]).catch((error: unknown) => error),
            );
          }
        })();
        return body;
      })
      .then(
        () => 'committed',
        (error: { code?: string }) => error.code,
      );
    await body;
    const rows = await database.sql.unsafe(`SELECT n FROM ${table} ORDER BY n`);
    return { outcome, later, committed: rows.map((row) => row.n) };
  }

  test('unpatched, a plain client: its later statements run on the new session, outside any transaction, and commit', async () => {
    const sql = unpatched.postgres(database.url, { max: 1, onnotice: () => {} });
    try {
      const { outcome, later, committed } = await deadTransaction(sql);
      expect(outcome).toBe('CONNECTION_CLOSED');
      expect(later.map((result) => (result as { count?: number }).count)).toEqual([1, 1]);
      expect(committed).toEqual([2, 3]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  test('unpatched, guarded: its later statements fail unsent, and nothing of it commits', async () => {
    const sql = guardTransactions(
      unpatched.postgres(database.url, { ...recommendedPostgresOptions, max: 1, onnotice: () => {} }),
    );
    try {
      const { outcome, later, committed } = await deadTransaction(sql);
      expect(outcome).toBe('CONNECTION_CLOSED');
      expect(later).toEqual([expect.any(TransactionClosedError), expect.any(TransactionClosedError)]);
      expect(later.map((error) => (error as TransactionClosedError).code)).toEqual([
        'CONNECTION_CLOSED',
        'CONNECTION_CLOSED',
      ]);
      expect(committed).toEqual([]);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  test('unpatched, guarded, through Drizzle: neither statements nor savepoints of the dead transaction run, in it or in a savepoint of it', async () => {
    const rows = pgTable(table, { n: integer('n').notNull() });
    const client = guardTransactions(
      unpatched.postgres(database.url, { ...recommendedPostgresOptions, max: 1, onnotice: () => {} }),
    );
    const db = drizzle(client);
    await database.sql.unsafe(`TRUNCATE ${table}`);
    const later: unknown[] = [];
    let body: Promise<void> | undefined;
    try {
      const outcome = await db
        .transaction((tx) => {
          body = (async () => {
            await tx.insert(rows).values({ n: 1 });
            await tx.transaction(async (savepoint) => {
              await savepoint.insert(rows).values({ n: 2 });
            });
            // The session dies inside a savepoint. Like the transaction's, the savepoint's promise settles then;
            // its body runs on: wait for both.
            let inner: Promise<void> | undefined;
            await tx
              .transaction((savepoint) => {
                inner = (async () => {
                  await savepoint.insert(rows).values({ n: 3 });
                  const [session] = await savepoint.execute<{ pid: number }>(
                    drizzleSql`SELECT pg_backend_pid() AS pid`,
                  );
                  await terminate(Number(session?.pid));
                  expect(await client`SELECT 1 AS reconnected`).toEqual([{ reconnected: 1 }]);
                  later.push(
                    await savepoint
                      .insert(rows)
                      .values({ n: 4 })
                      .catch((error: unknown) => error),
                  );
                })();
                return inner;
              })
              .catch((error: unknown) => later.push(error));
            await inner;
            later.push(
              await tx
                .insert(rows)
                .values({ n: 5 })
                .catch((error: unknown) => error),
            );
            later.push(
              await tx
                .transaction(async (savepoint) => {
                  await savepoint.insert(rows).values({ n: 6 });
                })
                .catch((error: unknown) => error),
            );
          })();
          return body;
        })
        .then(
          () => 'committed',
          (error: { code?: string }) => error.code,
        );
      await body;
      expect(outcome).toBe('CONNECTION_CLOSED');
      const causes = later.map((error) => {
        const cause = (error as { cause?: unknown }).cause ?? error; // Drizzle wraps a statement's error
        return cause instanceof TransactionClosedError ? cause.code : (cause as { code?: string }).code;
      });
      // The savepoint (raced against the close), the statement in it after the close, the statement after it, the
      // savepoint after that.
      expect(causes).toEqual([
        'CONNECTION_CLOSED',
        'CONNECTION_CLOSED',
        'CONNECTION_CLOSED',
        'CONNECTION_CLOSED',
      ]);
      expect(await database.sql.unsafe(`SELECT n FROM ${table} ORDER BY n`)).toEqual([]);
    } finally {
      await client.end({ timeout: 1 });
    }
  });
});

describe('the recommended client, in normal use', () => {
  const table = 'recommended_client_rows';
  const rows = pgTable(table, { n: integer('n').notNull(), tags: text('tags').array() });
  let sql: postgres.Sql;
  beforeAll(async () => {
    await database.sql.unsafe(`CREATE TABLE ${table} (n int NOT NULL, tags text[])`);
    sql = createPostgresClient(database.url, { max: 2, onnotice: () => {} });
  });
  afterAll(() => sql.end({ timeout: 1 }));
  const committed = async () =>
    (await database.sql.unsafe(`SELECT n FROM ${table} ORDER BY n`)).map((row) => row.n as number);

  test('transactions commit and roll back as before; a failed savepoint rolls back alone', async () => {
    await database.sql.unsafe(`TRUNCATE ${table}`);
    await sql.begin(async (tx) => {
      await tx`INSERT INTO ${sql(table)} (n) VALUES (1)`;
      await tx
        .savepoint(async (savepoint) => {
          await savepoint`INSERT INTO ${sql(table)} (n) VALUES (2)`;
          await savepoint`SELECT 1 / 0`;
        })
        .catch(() => {});
      await tx.savepoint('named', (savepoint) => savepoint`INSERT INTO ${sql(table)} (n) VALUES (3)`);
    });
    await expect(
      sql.begin(async (tx) => {
        await tx`INSERT INTO ${sql(table)} (n) VALUES (4)`;
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    // The pipelined form: an array of statements.
    expect(
      await sql.begin((tx) => [
        tx`INSERT INTO ${sql(table)} (n) VALUES (5)`,
        tx`SELECT count(*)::int AS n FROM ${sql(table)}`,
      ]),
    ).toEqual([[], [{ n: 3 }]]);
    expect(await committed()).toEqual([1, 3, 5]);
  });

  test('a statement issued after its transaction settled fails unsent, instead of running outside it', async () => {
    await database.sql.unsafe(`TRUNCATE ${table}`);
    let leaked: postgres.TransactionSql | undefined;
    await sql.begin(async (tx) => {
      leaked = tx;
      await tx`SELECT 1`;
    });
    const error = await leaked
      ?.unsafe(`INSERT INTO ${table} (n) VALUES (1)`)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(TransactionClosedError);
    expect((error as TransactionClosedError).code).toBe('TRANSACTION_ENDED');
    expect(await committed()).toEqual([]);
  });

  test('tx.file and the tagged savepoint still work', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fstore-sql-file-'));
    try {
      writeFileSync(join(dir, 'count.sql'), `SELECT count(*)::int AS n FROM ${table}`);
      const [counted] = await sql.begin(async (tx) => {
        const savepoint = tx.savepoint as unknown as (strings: TemplateStringsArray) => Promise<unknown>;
        await savepoint`SELECT 1`;
        return tx.file(join(dir, 'count.sql'));
      });
      expect(counted).toEqual({ n: expect.any(Number) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("what fetch_types: false costs: array columns come back as PostgreSQL's text, except through Drizzle's array columns", async () => {
    await database.sql.unsafe(`TRUNCATE ${table}`);
    expect(await sql`SELECT ARRAY[1, 2]::int[] AS ints, ARRAY['a', 'b'] AS texts`).toEqual([
      { ints: '{1,2}', texts: '{a,b}' },
    ]);
    const db = drizzle(sql);
    await db.insert(rows).values({ n: 1, tags: ['a', 'b "c"'] });
    expect(await db.select().from(rows)).toEqual([{ n: 1, tags: ['a', 'b "c"'] }]);
  });

  test("fstore's migrations and event store run on it", async () => {
    const own = await createTestDatabase({ from: 'empty' });
    const client = createPostgresClient(own.url, { max: 2, onnotice: () => {} });
    try {
      expect((await migrate(client)).applied.length).toBeGreaterThan(0);
      const store = createEventStore(drizzle(client), orderEvents);
      await store.register();
      await store.append('order-1', [{ type: 'OrderPlaced', data: { placedAt: 'now' } }], {
        expectedLastEventId: null,
      });
      expect((await store.load('order-1')).map((event) => event.type)).toEqual(['OrderPlaced']);
    } finally {
      await client.end({ timeout: 1 });
      await own.drop();
    }
  });
});

const specDatabase = await createTestDatabase();
afterAll(() => specDatabase.drop());
const specClient = createPostgresClient(specDatabase.url, { onnotice: () => {} });
afterAll(() => specClient.end({ timeout: 5 }));
describeEventStore('PostgreSQL via createPostgresClient', async () => {
  let statements = 0;
  const db = drizzle(specClient, { logger: { logQuery: () => void statements++ } });
  return { db, statements: () => statements };
});
