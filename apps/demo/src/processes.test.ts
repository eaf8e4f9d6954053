/** The two roles as separate processes on one database: a decider and two projectors that share the work. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { viewStatus } from '@fstore/stream';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, expect, test } from 'vitest';
import { check } from './check.js';
import { orderEvents } from './domain/order.js';
import { restaurantEvents } from './domain/restaurant.js';
import type { ProducerStats } from './producers.js';
import { views } from './setup.js';

const database = await createTestDatabase({ from: 'empty' });
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await database.drop();
});

const tsx = createRequire(import.meta.url).resolve('tsx');
function start(script: string, args: string[] = []) {
  const child = spawn(
    process.execPath,
    [
      '--conditions=@fstore/source',
      '--import',
      tsx,
      fileURLToPath(new URL(script, import.meta.url)),
      ...args,
    ],
    {
      env: { ...process.env, DATABASE_URL: database.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += String(chunk);
  });
  const waitFor = (pattern: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const match = output.match(pattern);
        if (match) {
          clearInterval(timer);
          resolve(match[0]);
        }
      }, 20);
      child.once('exit', (code) => {
        clearInterval(timer);
        const match = output.match(pattern);
        match ? resolve(match[0]) : reject(new Error(`${script} exited with ${code}: ${output}`));
      });
    });
  return { child, waitFor };
}

test('a decider process and two projector processes: the views are complete, each event projected once', async () => {
  const projectors = [start('./projector-cli.ts'), start('./projector-cli.ts')];
  await Promise.all(projectors.map((p) => p.waitFor(/^ready$/m)));
  const decider = start('./decider-cli.ts', ['--orders', '80', '--producers', '4', '--restaurants', '2']);
  const summary = JSON.parse(await decider.waitFor(/^\{"run".*$/m)) as { run: string; stats: ProducerStats };
  const db = drizzle(database.connect({ max: 2 }));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = (await viewStatus(db)).filter(
      (s) => s.view === views.restaurants || s.view === views.orders,
    );
    if (status.length === 2 && status.every((s) => s.eventsBehind === 0)) break;
    if (Date.now() > deadline) throw new Error(`not caught up: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const p of projectors) p.child.kill('SIGTERM');
  const handled = await Promise.all(
    projectors.map(async (p) => Number((await p.waitFor(/stopped handled=\d+/)).split('=')[1])),
  );
  // Both took part, and between them they handled every event once: each view subscribes to its own decider, so
  // an event reaches only the view that projects it (and no worker is called for the other's).
  expect(handled.every((n) => n > 0)).toBe(true);
  const result = await check(db, summary.run, summary.stats);
  expect(result.lines.filter((line) => !line.startsWith('ok '))).toEqual([]);
  expect(handled.reduce((a, b) => a + b, 0)).toBe(summary.stats.eventsAppended);
  const subscriptions = Object.fromEntries(
    (await viewStatus(db)).map((s) => [
      s.view,
      { deciders: s.subscribedDeciders, events: s.subscribedEvents },
    ]),
  );
  expect(subscriptions).toMatchObject({
    [views.restaurants]: { deciders: [restaurantEvents.decider], events: null },
    [views.orders]: { deciders: [orderEvents.decider], events: null },
  });
});
