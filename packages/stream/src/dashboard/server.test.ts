/**
 * The dashboard's server, over HTTP: safe by default (loopback, read-only), a token for any other address carried by
 * every request, actions only with the flag and the page's CSRF token, and the state it serves read from the SQL
 * API. On a real PostgreSQL; the page itself is tested in a browser (dashboard.browser.test.ts).
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { sql as drizzleSql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, describe, expect, test } from 'vitest';
import type { Transaction } from '../projection.js';
import type { ViewSample } from './sampler.js';
import {
  createSampler,
  DashboardOptionsError,
  type DashboardState,
  isLoopback,
  startDashboard,
} from './server.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));
const sql = database.sql;

/** A view with one parked event of a stream of its own; returns the view and the event's offset. */
async function parkedEvent() {
  const decider = `decider-${randomUUID()}`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  const view = `view-${randomUUID()}`;
  await sql`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
  const [event] = await sql<{ offset: string }[]>`
    SELECT "offset" FROM append_event('happened', ${randomUUID()}, ${decider}, ${`s-${randomUUID()}`}, '{}', ${randomUUID()}, NULL)`;
  const [lease] = await sql<{ lease_id: string; decider_id: string }[]>`
    SELECT lease_id, decider_id FROM lease_events(${view}, 10, 10, 60)`;
  await sql`SELECT fail_event(${view}, ${lease?.decider_id ?? null}, ${lease?.lease_id ?? null}, ${event?.offset ?? null}, 'boom', 0, 1)`;
  return { view, offset: Number(event?.offset) };
}

const csrfOf = async (url: string, init?: RequestInit) =>
  (await (await fetch(url, init)).text()).match(/name="fstore-csrf" content="([^"]+)"/)?.[1] ?? '';

describe('by default', () => {
  test('listens on 127.0.0.1, serves the page and the state, and refuses actions', async () => {
    const dashboard = await startDashboard({ db, port: 0 });
    try {
      expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const page = await fetch(dashboard.url);
      expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect(await page.text()).toContain('<script type="module" src="/dashboard.js"></script>');
      const { view, offset } = await parkedEvent();
      const state = (await (await fetch(new URL('/api/state', dashboard.url))).json()) as DashboardState;
      expect(state.actions).toBe(false);
      expect(state.parked.find((p) => p.view === view)).toMatchObject({ offset, error: 'boom', attempts: 1 });
      expect(state.views.find((v) => v.view === view)).toMatchObject({ parkedEvents: 1 });
      const csrf = await csrfOf(dashboard.url);
      const refused = await fetch(new URL('/api/parked/retry', dashboard.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': csrf },
        body: JSON.stringify({ view, offset }),
      });
      expect(refused.status).toBe(403);
      expect(await refused.json()).toEqual({
        error: 'the dashboard is read-only: start it with --actions to retry, discard or rebuild',
      });
      const [row] = await sql`SELECT retry_requested_at FROM parked_events WHERE view = ${view}`;
      expect(row?.retry_requested_at).toBeNull();
    } finally {
      await dashboard.close();
    }
  });

  test('loopback addresses are 127.0.0.0/8, ::1 and localhost; no other', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', 'example.com'].some(isLoopback)).toBe(false);
  });
});

describe('bound beyond loopback', () => {
  test('refuses to start without a token, or with a short one', async () => {
    await expect(startDashboard({ db, host: '0.0.0.0', port: 0 })).rejects.toBeInstanceOf(
      DashboardOptionsError,
    );
    await expect(startDashboard({ db, host: '0.0.0.0', port: 0, token: 'short' })).rejects.toBeInstanceOf(
      DashboardOptionsError,
    );
  });

  test('every request must carry the token: from the address once, then as a cookie, or as a bearer token', async () => {
    const token = randomUUID();
    const dashboard = await startDashboard({ db, host: '0.0.0.0', port: 0, token });
    try {
      const port = new URL(dashboard.url).port;
      const base = `http://127.0.0.1:${port}`;
      expect(dashboard.url).toBe(`http://0.0.0.0:${port}/?token=${token}`);
      for (const path of ['/', '/api/state', '/api/stream', '/dashboard.js'])
        expect((await fetch(`${base}${path}`)).status, path).toBe(401);
      expect((await fetch(`${base}/?token=wrong-${token}`)).status).toBe(401);
      const first = await fetch(`${base}/?token=${token}`, { redirect: 'manual' });
      expect(first.status).toBe(303);
      expect(first.headers.get('location')).toBe('/');
      const cookie = first.headers.get('set-cookie') ?? '';
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      const withCookie = await fetch(`${base}/api/state`, {
        headers: { cookie: cookie.split(';')[0] ?? '' },
      });
      expect(withCookie.status).toBe(200);
      const withBearer = await fetch(`${base}/api/state`, { headers: { authorization: `Bearer ${token}` } });
      expect(withBearer.status).toBe(200);
    } finally {
      await dashboard.close();
    }
  });
});

describe('with actions on', () => {
  test("retry and discard go through the SQL API, and need the page's CSRF token and a same-origin request", async () => {
    const dashboard = await startDashboard({ db, port: 0, actions: true });
    try {
      const csrf = await csrfOf(dashboard.url);
      expect(csrf).toMatch(/^[\w-]{32}$/);
      const post = (action: string, body: unknown, headers: Record<string, string> = {}) =>
        fetch(new URL(`/api/parked/${action}`, dashboard.url), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': csrf, ...headers },
          body: JSON.stringify(body),
        });
      const { view, offset } = await parkedEvent();
      expect((await post('retry', { view, offset }, { 'X-Fstore-Csrf': 'guess' })).status).toBe(403);
      expect((await post('retry', { view, offset }, { Origin: 'http://evil.example' })).status).toBe(403);
      expect((await post('retry', { view, offset: 'x' })).status).toBe(400);
      expect(await sql`SELECT retry_requested_at FROM parked_events WHERE view = ${view}`).toEqual([
        { retry_requested_at: null },
      ]);

      const retried = await post('retry', { view, offset });
      expect(await retried.json()).toEqual({ retried: offset });
      const [row] = await sql`SELECT retry_requested_at FROM parked_events WHERE view = ${view}`;
      expect(row?.retry_requested_at).toBeInstanceOf(Date);

      const discarded = await post('discard', { view, offset });
      expect(await discarded.json()).toEqual({ discarded: offset });
      expect(await sql`SELECT * FROM parked_events WHERE view = ${view}`).toEqual([]);
      // The SQL API's own refusal: nothing is parked there any more.
      const again = await post('discard', { view, offset });
      expect(again.status).toBe(409);
    } finally {
      await dashboard.close();
    }
  });
});

describe('rebuilding a view', () => {
  /** A view that handled both events of a stream of its own, and a read model (a table) that counted them. */
  async function handledView() {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    const view = `view-${randomUUID()}`;
    await sql`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
    const stream = `s-${randomUUID()}`;
    const [first] = await sql<{ event_id: string }[]>`
      SELECT event_id FROM append_event('happened', ${randomUUID()}, ${decider}, ${stream}, '{}', ${randomUUID()}, NULL)`;
    await sql`SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${stream}, '{}', ${randomUUID()}, ${first?.event_id ?? null})`;
    const rows = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
      SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 10, 10, 60)`;
    const last = rows.at(-1);
    await sql`SELECT * FROM ack_events(${view}, ${last?.decider_id ?? null}, ${last?.lease_id ?? null}, ${last?.offset ?? null})`;
    const model = `model_${randomUUID().replaceAll('-', '')}`;
    await sql`CREATE TABLE ${sql(model)} AS SELECT 2 AS handled`;
    return { view, model };
  }
  /** The dashboard's `rebuilds` for one view whose read model is the table `model`. */
  const emptying = (view: string, model: string) => ({
    [view]: {
      reset: async (tx: Transaction) => {
        await tx.execute(drizzleSql`DELETE FROM ${drizzleSql.identifier(model)}`);
      },
    },
  });
  const behind = async (view: string) =>
    Number((await sql`SELECT events_behind FROM view_lag() WHERE view = ${view}`)[0]?.events_behind);

  test('a view the dashboard was told how to empty: Rebuild empties its read model and replays it, as rebuildProjection does', async () => {
    const { view, model } = await handledView();
    const other = await handledView();
    const dashboard = await startDashboard({
      db,
      port: 0,
      actions: true,
      rebuilds: emptying(view, model),
    });
    try {
      const state = (await (await fetch(new URL('/api/state', dashboard.url))).json()) as DashboardState;
      expect(state.rebuildable).toEqual([view]);
      const csrf = await csrfOf(dashboard.url);
      const post = (body: unknown, headers: Record<string, string> = {}) =>
        fetch(new URL('/api/views/rebuild', dashboard.url), {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': csrf, ...headers },
          body: JSON.stringify(body),
        });
      expect(await behind(view)).toBe(0);
      // The same guards as every action, and no rebuild of a view whose read model the dashboard cannot empty.
      expect((await post({ view }, { 'X-Fstore-Csrf': 'guess' })).status).toBe(403);
      expect((await post({ view }, { Origin: 'http://evil.example' })).status).toBe(403);
      const unknown = await post({ view: other.view });
      expect(unknown.status).toBe(400);
      expect((await unknown.json()) as { error: string }).toEqual({
        error: `this dashboard was not told how to empty the read model of view ${JSON.stringify(other.view)}`,
      });
      expect(await behind(view)).toBe(0);
      expect(await sql`SELECT handled FROM ${sql(model)}`).toEqual([{ handled: 2 }]);

      const rebuilt = await post({ view });
      expect(rebuilt.status).toBe(200);
      expect(await rebuilt.json()).toEqual({
        rebuilt: view,
        missing: { archivedStreams: 0, archivedEvents: 0, removedStreams: 0, removedEvents: 0 },
      });
      // Emptied and replayed from the start, in one transaction: both events are pending again; the other view is untouched.
      expect(await sql`SELECT handled FROM ${sql(model)}`).toEqual([]);
      expect(await behind(view)).toBe(2);
      expect(await behind(other.view)).toBe(0);
      expect(await sql`SELECT handled FROM ${sql(other.model)}`).toEqual([{ handled: 2 }]);
    } finally {
      await dashboard.close();
    }
  });

  test('read-only, the page offers no rebuild and the server refuses one, even for a view it could empty', async () => {
    const { view, model } = await handledView();
    const dashboard = await startDashboard({
      db,
      port: 0,
      rebuilds: emptying(view, model),
    });
    try {
      const state = (await (await fetch(new URL('/api/state', dashboard.url))).json()) as DashboardState;
      expect(state.rebuildable).toEqual([]);
      const refused = await fetch(new URL('/api/views/rebuild', dashboard.url), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Fstore-Csrf': await csrfOf(dashboard.url) },
        body: JSON.stringify({ view }),
      });
      expect(refused.status).toBe(403);
      expect(await sql`SELECT handled FROM ${sql(model)}`).toEqual([{ handled: 2 }]);
      expect(await behind(view)).toBe(0);
    } finally {
      await dashboard.close();
    }
  });
});

describe('the sampler', () => {
  test('counts as handled what a view worked off, never what was merely appended', async () => {
    const decider = `decider-${randomUUID()}`;
    await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
    const view = `view-${randomUUID()}`;
    await sql`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
    const sampler = createSampler(db, { intervalMs: 1000, historySeconds: 60, actions: false });
    try {
      const handled = async () =>
        (await sampler.refresh()).views.find((v) => v.view === view)?.history.at(-1) as ViewSample;
      await handled();
      for (let i = 0; i < 10; i++)
        await sql`SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${`s-${i}`}, '{}', ${randomUUID()}, NULL)`;
      // Appended, not handled: the backlog grows by 10 and nothing counts as handled.
      expect(await handled()).toMatchObject({ eventsBehind: 10, handledPerSecond: 0 });
      const started = Date.now();
      const leased = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
        SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 100, 100, 60)`;
      for (const row of leased)
        await sql`SELECT * FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
      const after = await handled();
      expect(after.eventsBehind).toBe(0);
      // 10 events over the time since the last look (at most the time since the lease began, plus the look).
      expect(after.handledPerSecond ?? 0).toBeGreaterThanOrEqual(10 / ((Date.now() - started) / 1000 + 5));
      expect(after.handledPerSecond ?? 0).toBeGreaterThan(0);
    } finally {
      sampler.close();
    }
  });
});
