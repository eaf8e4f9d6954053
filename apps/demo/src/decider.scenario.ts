/**
 * The demo's decider process (decider-cli.ts) through what production does to a command side: its PostgreSQL
 * crashes and comes back, and commits whose answers never arrive. Either way the process rides it out (exit 0)
 * and the log holds exactly the events it reports: no command lost, none applied twice.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import {
  createTestDatabase,
  type RestartableServer,
  startCuttingProxy,
  startRestartableServer,
  withDatabase,
} from '@fstore/test-harness';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import type { ProducerStats } from './producers.js';

const tsx = createRequire(import.meta.url).resolve('tsx');
let server: RestartableServer;
const children: ChildProcess[] = [];
const clients: postgres.Sql[] = [];

beforeAll(async () => {
  server = await startRestartableServer();
});
afterAll(async () => {
  await server?.destroy();
});
afterEach(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(clients.map((client) => client.end({ timeout: 1 }).catch(() => {})));
  clients.length = 0;
  if (!server.running) await server.start();
});

/** Starts the decider process on `url`; resolves with its exit code, its summary line and its stderr. */
function runDecider(url: string, args: string[]) {
  const child = spawn(
    process.execPath,
    [
      '--conditions=@fstore/source',
      '--import',
      tsx,
      fileURLToPath(new URL('./decider-cli.ts', import.meta.url)),
      ...args,
    ],
    { env: { ...process.env, DATABASE_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += String(chunk);
  });
  child.stderr?.on('data', (chunk) => {
    stderr += String(chunk);
  });
  return new Promise<{
    code: number | null;
    summary?: { run: string; stats: ProducerStats };
    stderr: string;
  }>((resolve) => {
    child.once('exit', (code) => {
      const line = stdout.match(/^\{"run".*$/m)?.[0];
      resolve({ code, ...(line ? { summary: JSON.parse(line) } : {}), stderr });
    });
  });
}

/** What the log holds of a run: its events, and the orders placed and prepared. */
async function logOf(sql: postgres.Sql, run: string) {
  const [row] = await sql<{ events: number; placed: number; prepared: number }[]>`
    SELECT count(*)::int AS events,
           (count(*) FILTER (WHERE event = 'OrderPlaced'))::int AS placed,
           (count(*) FILTER (WHERE event = 'OrderPrepared'))::int AS prepared
    FROM events
    WHERE decider_id LIKE ${`${run}-%`}`;
  return row;
}

/** Events in the log so far (0 while the decider is still migrating the database). */
async function eventsSoFar(sql: postgres.Sql): Promise<number> {
  try {
    const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events`;
    return row?.n ?? 0;
  } catch {
    return 0;
  }
}

async function waitForEvents(sql: postgres.Sql, atLeast: number, decider: Promise<unknown>) {
  let exited = false;
  void decider.then(() => {
    exited = true;
  });
  while (!exited && (await eventsSoFar(sql)) < atLeast)
    await new Promise((resolve) => setTimeout(resolve, 50));
  expect(exited, 'the decider ended before the fault could be injected').toBe(false);
}

function expectExactlyWhatItReports(
  result: Awaited<ReturnType<typeof runDecider>>,
  log: Awaited<ReturnType<typeof logOf>>,
) {
  expect(result.code, result.stderr).toBe(0);
  const stats = result.summary?.stats;
  expect(log).toEqual({
    events: stats?.eventsAppended,
    placed: stats?.ordersPlaced,
    prepared: stats?.ordersPrepared,
  });
}

test('PostgreSQL crashes (immediate stop) and starts again while the decider runs: it exits 0, and the log holds exactly what it reports', async () => {
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  clients.push(admin);
  await admin.unsafe('CREATE DATABASE fstore_decider_restart');
  const url = withDatabase(server.adminUrl, 'fstore_decider_restart');
  const decider = runDecider(url, [
    '--orders',
    '300',
    '--producers',
    '4',
    '--restaurants',
    '3',
    '--run',
    'crash',
  ]);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  clients.push(sql);
  await waitForEvents(sql, 100, decider);
  await server.stop({ mode: 'immediate' });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await server.start();

  const result = await decider;
  const log = await logOf(sql, 'crash');
  console.log(
    `decider through a crash: ${JSON.stringify(result.summary?.stats)}; in the log: ${JSON.stringify(log)}`,
  );
  expectExactlyWhatItReports(result, log);
});

test('commits whose answers are lost, again and again while the decider runs: it exits 0, and the log holds exactly what it reports', async () => {
  const database = await createTestDatabase({ from: 'empty' });
  const proxy = await startCuttingProxy(database.url);
  try {
    const decider = runDecider(proxy.url, [
      '--orders',
      '150',
      '--producers',
      '4',
      '--restaurants',
      '3',
      '--run',
      'cut',
    ]);
    const sql = database.connect({ max: 1 });
    clients.push(sql);
    await waitForEvents(sql, 20, decider);
    // Every 100 ms, the next statement to commit (an append, or a load's implicit transaction) loses its answer.
    let running = true;
    void decider.then(() => {
      running = false;
    });
    while (running) {
      proxy.cutAfterNextCommit();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const result = await decider;
    const log = await logOf(sql, 'cut');
    console.log(
      `decider through ${proxy.cuts} lost answers: ${JSON.stringify(result.summary?.stats)}; in the log: ${JSON.stringify(log)}`,
    );
    expect(proxy.cuts).toBeGreaterThan(5);
    expectExactlyWhatItReports(result, log);
  } finally {
    await proxy.close();
    await database.drop();
  }
});
