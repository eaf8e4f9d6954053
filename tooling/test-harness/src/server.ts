/**
 * Where the tests' PostgreSQL comes from, decided once per test run:
 * - `DATABASE_URL`: a server you run (the role needs CREATEDB; every test database is dropped afterwards);
 * - `FSTORE_TEST_IMAGE`: a container started by testcontainers (a `postgres:*` image, or a `yugabytedb/yugabyte:*`
 *   image), when a Docker engine answers;
 * - otherwise an embedded PostgreSQL from npm (`@fstore/embedded-postgres`), version `FSTORE_TEST_PG_VERSION`
 *   (14 to 18, default 18).
 */
import { type EmbeddedPostgres, parseVersion, startEmbeddedPostgres } from '@fstore/embedded-postgres';

export interface TestServer {
  /** A superuser (or CREATEDB) connection string to the server's maintenance database. */
  adminUrl: string;
  /** What it is, for messages: "embedded PostgreSQL 18", "DATABASE_URL", "container postgres:17". */
  description: string;
  stop(): Promise<void>;
}

export async function startTestServer(env: NodeJS.ProcessEnv = process.env): Promise<TestServer> {
  if (env.DATABASE_URL) {
    return { adminUrl: env.DATABASE_URL, description: 'DATABASE_URL', stop: async () => {} };
  }
  if (env.FSTORE_TEST_IMAGE) return startContainer(env.FSTORE_TEST_IMAGE);
  const server = await startEmbeddedPostgres({
    version: parseVersion(env.FSTORE_TEST_PG_VERSION, 'FSTORE_TEST_PG_VERSION'),
  });
  return { adminUrl: server.adminUrl, description: server.description, stop: () => server.destroy() };
}

/**
 * An embedded PostgreSQL of its own (never the shared one of the run, which other test files use) that can be
 * stopped and started again with its data kept: for scenarios where the database goes away under clients.
 */
export type RestartableServer = EmbeddedPostgres;
export const startRestartableServer = startEmbeddedPostgres;

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
