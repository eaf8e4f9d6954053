/**
 * The two roles as separate processes on one database: a decider and two projectors that share the work; and the
 * decider reading commands from stdin, each applied once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { createEventStore } from '@fstore/store';
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
  // Listened for from the start: a child that exits while a waitFor polls would otherwise be waited for forever.
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
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
      void exited.then((code) => {
        clearInterval(timer);
        const match = output.match(pattern);
        match ? resolve(match[0]) : reject(new Error(`${script} exited with ${code}: ${output}`));
      });
    });
  return { child, waitFor, exited };
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
  // Between them they handled every event once: each view subscribes to its own decider, so an event reaches only
  // the view that projects it (and no worker is called for the other's). Which process handles what is the
  // frontier's holder: it may take every event while the other waits (migration 0028), so neither count is asserted.
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

test('the decider on stdin: a line sent twice with one commandId is applied once, the second answer replayed', async () => {
  const child = spawn(
    process.execPath,
    [
      '--conditions=@fstore/source',
      '--import',
      tsx,
      fileURLToPath(new URL('./decider-cli.ts', import.meta.url)),
      '--stdin',
    ],
    { env: { ...process.env, DATABASE_URL: database.url }, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  children.push(child);
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += String(chunk);
  });
  const id = `stdin-${randomUUID()}`;
  const line = JSON.stringify({
    decider: 'Restaurant',
    id,
    command: { kind: 'ChangeMenu', menu: [{ id: 'dish-1', name: 'soup', price: 4 }] },
    commandId: randomUUID(),
  });
  const create = JSON.stringify({
    decider: 'Restaurant',
    id,
    command: { kind: 'CreateRestaurant', name: 'Chez Ada', menu: [{ id: 'dish-1', name: 'tea', price: 3 }] },
  });
  child.stdin?.end(`${create}\n${line}\n${line}\n`);
  const code = await new Promise((resolve) => child.once('exit', resolve));
  expect(code).toBe(0);
  const answers = output
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { ok: boolean; events: string[]; replayed: boolean; commandId: string });
  expect(answers.map((a) => [a.ok, a.events, a.replayed])).toEqual([
    [true, ['RestaurantCreated'], false],
    [true, ['MenuChanged'], false],
    [true, ['MenuChanged'], true],
  ]);
  expect(answers[2]?.commandId).toBe(answers[1]?.commandId);
  const db = drizzle(database.connect({ max: 1 }));
  const stored = await createEventStore(db, restaurantEvents).load(id);
  expect(stored.map((e) => e.type)).toEqual(['RestaurantCreated', 'MenuChanged']);
});

test('pnpm demo -- --dashboard prints the dashboard address, which serves the demo views while it runs', async () => {
  const demo = start('./main.ts', ['--dashboard', '--orders', '400', '--producers', '2']);
  const line = await demo.waitFor(/^dashboard: http:\/\/127\.0\.0\.1:\d+\/ .*$/m);
  const address = line.split(' ')[1] as string;
  const state = (await (await fetch(new URL('/api/state', address))).json()) as {
    views: { view: string }[];
    rebuildable: string[];
  };
  expect(state.views.map((v) => v.view)).toEqual(expect.arrayContaining([views.orders, views.restaurants]));
  // The demo knows how to empty its read models: both views can be rebuilt from the page.
  expect([...state.rebuildable].sort()).toEqual([views.orders, views.restaurants].sort());
  expect(await demo.waitFor(/^all checks passed .*$/m)).toMatch(/all checks passed/);
  expect(await demo.exited).toBe(0);
  // Closed with the demo.
  await expect(fetch(new URL('/api/state', address))).rejects.toThrow();
});
