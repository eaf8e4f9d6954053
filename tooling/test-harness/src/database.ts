import { randomBytes } from 'node:crypto';
import { withDatabase } from '@fstore/embedded-postgres';
import postgres from 'postgres';
import { inject } from 'vitest';
import { type TestServerContext, testServerKey } from './global-setup.js';

export interface TestDatabase {
  /** Connection string of this test file's own database. */
  url: string;
  /** Its name. */
  name: string;
  /** A postgres.js pool on it, closed by drop(). */
  sql: postgres.Sql;
  /** Opens another postgres.js client on the same database (for races); drop() closes it too. */
  connect(options?: postgres.Options<Record<string, never>>): postgres.Sql;
  /** Closes every client and drops the database. */
  drop(): Promise<void>;
}

export interface CreateTestDatabaseOptions {
  /** Clone the template the global setup prepared (default), or start from an empty database. */
  from?: 'template' | 'empty';
}

/** Creates a database of its own for the calling test file, on the run's PostgreSQL. */
export async function createTestDatabase(options: CreateTestDatabaseOptions = {}): Promise<TestDatabase> {
  // Typed by hand: a `declare module 'vitest'` augmentation does not survive every consumer's type-check.
  const { adminUrl, template } = inject(testServerKey as never) as TestServerContext;
  const name = `fstore_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const source = options.from === 'empty' ? 'template0' : template;
    await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${source}"`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(adminUrl, name);
  const clients: postgres.Sql[] = [];
  const connect = (clientOptions: postgres.Options<Record<string, never>> = {}) => {
    const client = postgres(url, { onnotice: () => {}, ...clientOptions });
    clients.push(client);
    return client;
  };
  const sql = connect();
  return {
    url,
    name,
    sql,
    connect,
    async drop() {
      await Promise.all(clients.map((client) => client.end({ timeout: 5 })));
      const dropper = postgres(adminUrl, { max: 1, onnotice: () => {} });
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await dropper.end();
      }
    },
  };
}
