/**
 * The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium, or FSTORE_TEST_CHROMIUM), driven by
 * playwright-core, which downloads no browser. The page shows the seeded views and their lag, the lag falls as a
 * worker catches up, a parked event appears and its Retry button gets it handled, a read-only dashboard offers no
 * action, Rebuild asks once more and then replays the view, a view name holding markup shows as text, and the page is
 * not blank. Without Chromium the tests are skipped with a message, unless FSTORE_TEST_BROWSER=required (CI installs
 * Chromium and sets it).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { registerView } from '../functions.js';
import { createProjection } from '../projection.js';
import { type Dashboard, startDashboard } from './server.js';

const executable = process.env.FSTORE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const available = existsSync(executable);
if (!available) {
  if (process.env.FSTORE_TEST_BROWSER === 'required')
    throw new Error(`FSTORE_TEST_BROWSER=required, and there is no Chromium at ${executable}`);
  console.warn(`dashboard browser tests skipped: no Chromium at ${executable} (apt-get install chromium)`);
}

const tickets = defineEvents('DashboardTicket', { Opened: event<{ fail?: boolean }>() });

describe.skipIf(!available)('the dashboard in Chromium', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let browser: Browser;
  let dashboard: Dashboard;
  let page: Page;
  const board = 'ticket-board';
  const markup = '<img src=x onerror="window.__injected = true">';

  beforeAll(async () => {
    database = await createTestDatabase();
    db = drizzle(database.connect({ max: 8 }));
    const store = createEventStore(db, tickets);
    await store.register();
    await registerView(db, board, {
      deciders: ['DashboardTicket'],
      pollIntervalMs: 50,
      startAt: new Date(0),
    });
    await registerView(db, markup, { deciders: ['NoSuchDecider'] });
    for (let i = 0; i < 10; i++)
      await store.append(
        `ticket-${i}`,
        [0, 1, 2].map(() => ({ type: 'Opened' as const, data: {} })),
        { expectedLastEventId: null },
      );
    dashboard = await startDashboard({ db, port: 0, actions: true, intervalMs: 200 });
    browser = await chromium.launch({ executablePath: executable, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(dashboard.url);
  }, budget(60_000));

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await database?.drop();
  });

  const behind = (view: string) =>
    page.locator(`#views tbody tr[data-view="${view}"] td`).first().getAttribute('data-behind');

  /** Runs a worker with a no-op handler on the board until `behindOf` reads 0, then stops it. */
  async function catchUp(behindOf: () => Promise<string | null>) {
    const worker = createProjection({
      db,
      view: board,
      events: [tickets],
      pollIntervalMs: 50,
      async handle() {},
    });
    await worker.start();
    try {
      await expect.poll(behindOf, { timeout: budget(30_000), interval: 100 }).toBe('0');
    } finally {
      await worker.stop();
    }
  }

  test('shows the seeded views and their lag', async () => {
    await page.waitForSelector(`#views tbody tr[data-view="${board}"]`);
    expect(await behind(board)).toBe('30');
    expect(await page.locator(`#views tbody tr[data-view="${board}"] th`).textContent()).toBe(board);
    await expect.poll(() => page.locator('#database dd').first().textContent()).toMatch(/events\/s$/);
  });

  test('a view name holding markup is shown as text, never run', async () => {
    const row = page.locator('#views tbody tr').filter({ hasText: 'onerror' });
    expect(await row.locator('th').textContent()).toBe(markup);
    expect(await page.locator('#views img').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { __injected?: boolean }).__injected)).toBeUndefined();
  });

  test('the lag falls to nothing as a worker catches up', async () => {
    await catchUp(() => behind(board));
  });

  test('a parked event appears with its error, and its Retry button gets it handled', async () => {
    const view = 'flaky-board';
    let healed = false;
    const worker = createProjection({
      db,
      view,
      events: [tickets],
      pollIntervalMs: 50,
      maxAttempts: 1,
      backoff: { initialMs: 10, maxMs: 10 },
      async handle(e, tx) {
        if (e.data.fail && !healed) throw new Error(`cannot handle ${e.deciderId}: the printer is on fire`);
        await tx.execute(sql`SELECT 1`);
      },
    });
    await worker.start();
    try {
      const store = createEventStore(db, tickets);
      const [failing] = await store.append(
        `flaky-${randomUUID()}`,
        [{ type: 'Opened', data: { fail: true } }],
        {
          expectedLastEventId: null,
        },
      );
      const row = page.locator(`#parked tbody tr[data-view="${view}"][data-offset="${failing?.offset}"]`);
      await row.waitFor({ timeout: budget(30_000) });
      expect(await row.locator('td.error').textContent()).toMatch(/the printer is on fire/);
      healed = true;
      await row.getByRole('button', { name: /^retry the event/ }).click();
      await expect.poll(() => page.locator('#action-result').textContent()).toMatch(/^Retry requested/);
      await row.waitFor({ state: 'detached', timeout: budget(30_000) });
      expect(await database.sql`SELECT count(*)::int AS n FROM parked_events WHERE view = ${view}`).toEqual([
        { n: 0 },
      ]);
    } finally {
      await worker.stop();
    }
  });

  test('a read-only dashboard offers no action', async () => {
    const readOnly = await startDashboard({ db, port: 0, intervalMs: 200 });
    const other = await browser.newPage();
    try {
      await other.goto(readOnly.url);
      await other.waitForSelector(`#views tbody tr[data-view="${board}"]`);
      expect(await other.locator('#read-only').isVisible()).toBe(true);
      expect(await other.locator('#parked button').count()).toBe(0);
      expect(await other.locator('#views button').count()).toBe(0);
    } finally {
      await other.close();
      await readOnly.close();
    }
  });

  test('Rebuild asks once more, then empties the read model and replays the view', async () => {
    let resets = 0;
    const rebuilding = await startDashboard({
      db,
      port: 0,
      actions: true,
      intervalMs: 200,
      rebuilds: {
        [board]: {
          startAt: new Date(0),
          async reset(tx) {
            await tx.execute(sql`SELECT 1`);
            resets++;
          },
        },
      },
    });
    const other = await browser.newPage();
    try {
      await other.goto(rebuilding.url);
      const row = other.locator(`#views tbody tr[data-view="${board}"]`);
      await row.waitFor();
      // Caught up first (the parked-event test appended to its decider since the worker of an earlier test ran).
      await catchUp(() => row.locator('td').first().getAttribute('data-behind'));
      const [{ total } = { total: 0 }] = await database.sql<{ total: number }[]>`
        SELECT count(*)::int AS total FROM events WHERE decider = 'DashboardTicket'`;
      // The other views (one with markup in its name, the parked-event test's) have no reset: no button.
      expect(await other.locator('#views button').count()).toBe(1);
      await row.getByRole('button', { name: /^rebuild view/ }).click();
      await expect
        .poll(() => other.locator('#action-result').textContent())
        .toMatch(/^Rebuild view ticket-board\?/);
      expect(resets).toBe(0);
      await row.getByRole('button', { name: /^confirm: empty the read model/ }).click();
      await expect
        .poll(() => other.locator('#action-result').textContent())
        .toMatch(/^View ticket-board is rebuilding/);
      expect(resets).toBe(1);
      // Every event of the view is to be handled again (no worker runs now).
      await expect
        .poll(() => row.locator('td').first().getAttribute('data-behind'), { timeout: budget(30_000) })
        .toBe(String(total));
    } finally {
      await other.close();
      await rebuilding.close();
    }
  });

  test('the page is not blank (a screenshot against one of an empty page)', async () => {
    const shot = await page.screenshot({ fullPage: true });
    const blank = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const empty = await blank.screenshot({ fullPage: true });
    await blank.close();
    expect(shot.length).toBeGreaterThan(5 * empty.length);
    // FSTORE_TEST_SCREENSHOT=<path> keeps it (docs/dashboard.png is one).
    if (process.env.FSTORE_TEST_SCREENSHOT) writeFileSync(process.env.FSTORE_TEST_SCREENSHOT, shot);
  });
});
