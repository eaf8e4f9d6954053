/**
 * The operator's dashboard: a small web page against one database, served by Node's own http module. It listens on
 * 127.0.0.1 and is read-only unless told otherwise; bound to any other address it needs a token, which every request
 * carries (a cookie set from the first visit's `?token=`, or `Authorization: Bearer`). Retry and discard of parked
 * events, and rebuilds of the views it is told how to empty, need `actions: true`, and carry the page's CSRF token in
 * a header. Everything goes through the SQL API, so the role the dashboard connects as decides what it may do.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Database } from '@fstore/store';
import { FstoreError } from '@fstore/store';
import { discardParkedEvent, retryParkedEvent } from '../functions.js';
import { type RebuildOptions, rebuildProjection } from '../rebuild.js';
import { createSampler, type DashboardState } from './sampler.js';

export { createSampler, type DashboardState, type Sampler } from './sampler.js';

export interface DashboardOptions {
  db: Database;
  /** Address to listen on. Default 127.0.0.1; any other needs `token`. */
  host?: string;
  /** Port. Default 4100; 0 picks a free one. */
  port?: number;
  /** The secret every request must carry. Required unless the host is a loopback address. */
  token?: string;
  /** Whether the page may retry and discard parked events, and rebuild the views of `rebuilds`. Default false. */
  actions?: boolean;
  /**
   * The views the page may rebuild (with `actions`), each with what rebuildProjection needs besides its name: how to
   * empty its read model, and where to replay from. Only the program that owns a read model knows how to empty it,
   * so a view not named here has no Rebuild button (and `fstore dashboard`, which runs no code of yours, offers none).
   */
  rebuilds?: Record<string, Omit<RebuildOptions, 'view'>>;
  /** How often the figures are read while a page is open. Default 1000 ms. */
  intervalMs?: number;
  /** How much history the charts show. Default 300 s. */
  historySeconds?: number;
}

export interface Dashboard {
  /** The page's address (with `?token=` when a token is needed). */
  url: string;
  close(): Promise<void>;
}

/** Options the dashboard refuses to start with (a non-loopback address without a token, a short token). */
export class DashboardOptionsError extends FstoreError {
  override name = 'DashboardOptionsError';
}

const assets = new URL('../../dashboard-assets/', import.meta.url);
const files: Record<string, { file: string; type: string }> = {
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
};
const cookieName = 'fstore_dashboard';

/** Whether an address is this machine's own: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? '127.0.0.1';
  const token = options.token;
  if (!isLoopback(host) && !token)
    throw new DashboardOptionsError(
      `the dashboard listens on ${host}, beyond this machine: give it a token (--token or FSTORE_DASHBOARD_TOKEN)`,
    );
  if (token !== undefined && token.length < 16)
    throw new DashboardOptionsError('the dashboard token must be at least 16 characters long');
  const actions = options.actions === true;
  const csrf = randomBytes(24).toString('base64url');
  const rebuilds = new Map(Object.entries(options.rebuilds ?? {}));
  const sampler = createSampler(options.db, {
    intervalMs: options.intervalMs ?? 1000,
    historySeconds: options.historySeconds ?? 300,
    actions,
    rebuildable: actions ? [...rebuilds.keys()] : [],
  });
  const page = (await readFile(new URL('index.html', assets), 'utf8')).replace('{{csrf}}', csrf);
  const streams = new Set<ServerResponse>();

  const authorized = (request: IncomingMessage, url: URL): 'yes' | 'no' | 'from-query' => {
    if (!token) return 'yes';
    const offered = [
      request.headers.authorization?.match(/^Bearer (.+)$/)?.[1],
      cookieValue(request.headers.cookie, cookieName),
    ];
    if (offered.some((value) => value !== undefined && same(value, token))) return 'yes';
    const query = url.searchParams.get('token');
    return query !== null && same(query, token) ? 'from-query' : 'no';
  };

  const server = createServer(async (request, response) => {
    securityHeaders(response);
    try {
      const url = new URL(request.url ?? '/', 'http://dashboard');
      const access = authorized(request, url);
      if (access === 'no')
        return send(response, 401, { error: 'a token is needed: open the address with ?token=…' });
      if (access === 'from-query') {
        // The token moves to a cookie the browser sends by itself, and out of the address bar and its history.
        response.setHeader(
          'Set-Cookie',
          `${cookieName}=${encodeURIComponent(token ?? '')}; HttpOnly; SameSite=Strict; Path=/`,
        );
        url.searchParams.delete('token');
        response.writeHead(303, { Location: `${url.pathname}${url.search}` });
        return response.end();
      }
      if (request.method === 'GET' && url.pathname === '/') {
        response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
        return response.end(page);
      }
      const asset = files[url.pathname];
      if (request.method === 'GET' && asset) {
        response.writeHead(200, { 'Content-Type': asset.type });
        return response.end(await readFile(new URL(asset.file, assets)));
      }
      if (request.method === 'GET' && url.pathname === '/api/state')
        return send(response, 200, await sampler.current());
      if (request.method === 'GET' && url.pathname === '/api/stream') return openStream(request, response);
      const action = url.pathname.match(/^\/api\/parked\/(retry|discard)$/)?.[1];
      if (request.method === 'POST' && action) return act(request, response, action as 'retry' | 'discard');
      if (request.method === 'POST' && url.pathname === '/api/views/rebuild')
        return rebuild(request, response);
      return send(response, 404, { error: 'not found' });
    } catch (error) {
      return send(response, 500, { error: error instanceof Error ? error.message : String(error) });
    }
  });

  function openStream(request: IncomingMessage, response: ServerResponse) {
    response.writeHead(200, { 'Content-Type': 'text/event-stream', Connection: 'keep-alive' });
    streams.add(response);
    const push = (state: DashboardState) => response.write(`data: ${JSON.stringify(state)}\n\n`);
    const stop = sampler.listen(push);
    void sampler.current().then(push, () => {});
    request.on('close', () => {
      stop();
      streams.delete(response);
    });
  }

  /** An action's request as the page sends it, or the refusal already sent. */
  async function actionBody(
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<{ view?: unknown; offset?: unknown } | undefined> {
    if (!actions) {
      send(response, 403, {
        error: 'the dashboard is read-only: start it with --actions to retry, discard or rebuild',
      });
      return undefined;
    }
    // A form on another site cannot set this header, nor read the page that holds its value.
    if (request.headers['x-fstore-csrf'] !== csrf) {
      send(response, 403, { error: 'missing or wrong CSRF token: reload the page' });
      return undefined;
    }
    const origin = request.headers.origin;
    if (origin !== undefined && new URL(origin).host !== request.headers.host) {
      send(response, 403, { error: `requests from ${origin} are refused` });
      return undefined;
    }
    if (!String(request.headers['content-type']).startsWith('application/json')) {
      send(response, 415, { error: 'send JSON' });
      return undefined;
    }
    return JSON.parse((await readBody(request)) || '{}') as { view?: unknown; offset?: unknown };
  }

  async function act(request: IncomingMessage, response: ServerResponse, action: 'retry' | 'discard') {
    const body = await actionBody(request, response);
    if (!body) return;
    if (typeof body.view !== 'string' || !Number.isSafeInteger(body.offset))
      return send(response, 400, { error: 'give the view (a string) and the offset (a whole number)' });
    try {
      const parked =
        action === 'retry'
          ? await retryParkedEvent(options.db, body.view, body.offset as number)
          : await discardParkedEvent(options.db, body.view, body.offset as number);
      await sampler.refresh().catch(() => {});
      return send(response, 200, { [action === 'retry' ? 'retried' : 'discarded']: parked.offset });
    } catch (error) {
      // The SQL API's refusal (no such parked event, or a role without EXECUTE), as PostgreSQL said it.
      return send(response, 409, { error: databaseMessage(error) });
    }
  }

  async function rebuild(request: IncomingMessage, response: ServerResponse) {
    const body = await actionBody(request, response);
    if (!body) return;
    const how = typeof body.view === 'string' ? rebuilds.get(body.view) : undefined;
    if (typeof body.view !== 'string' || !how)
      return send(response, 400, {
        error: `this dashboard was not told how to empty the read model of view ${JSON.stringify(body.view)}`,
      });
    try {
      const missing = await rebuildProjection(options.db, { ...how, view: body.view });
      await sampler.refresh().catch(() => {});
      return send(response, 200, { rebuilt: body.view, missing });
    } catch (error) {
      // HistoryMissingError (nothing was reset), or the SQL API's refusal, as it was said.
      return send(response, 409, { error: databaseMessage(error) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 4100, host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (options.port ?? 4100);
  const shownHost = isIP(host) === 6 ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/${token ? `?token=${encodeURIComponent(token)}` : ''}`,
    async close() {
      sampler.close();
      for (const response of streams) response.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The message of the database error in a chain of causes (drizzle wraps it with the query), else the error's own. */
function databaseMessage(error: unknown): string {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return `${current.message} (${code})`;
    current = current.cause;
  }
  return error instanceof Error ? error.message : String(error);
}

function securityHeaders(response: ServerResponse) {
  response.setHeader(
    'Content-Security-Policy',
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  );
  response.setHeader('X-Content-Type-Options', 'nosniff');
  response.setHeader('Referrer-Policy', 'no-referrer');
  response.setHeader('Cache-Control', 'no-store');
}

function send(response: ServerResponse, status: number, body: unknown) {
  response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
  response.end(JSON.stringify(body));
}

function same(offered: string, expected: string): boolean {
  const a = Buffer.from(offered);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

async function readBody(request: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of request) {
    body += chunk;
    if (body.length > 10_000) throw new Error('request body too large');
  }
  return body;
}
