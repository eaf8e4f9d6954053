/**
 * Fresh databases with fstore's migrations, one per test file (or per test): in process on PGlite (no server at
 * all), or on a PostgreSQL server (embedded, a container, or DATABASE_URL), in a database of their own that `drop()`
 * removes. The drivers are optional peers, loaded only by the helper that needs them.
 */
import { randomBytes } from 'node:crypto';
import { migrate } from '@fstore/schema';
import type { Database } from '@fstore/store';

export interface FreshDatabase {
  /** A Drizzle database on it, for stores, projections and your own queries. */
  db: Database;
  /** Closes it (and drops it, on a server). */
  drop(): Promise<void>;
}

export interface FreshPostgresDatabase extends FreshDatabase {
  /** Its connection string, for processes of their own or a driver of your choice. */
  url: string;
}

/** A new PGlite (PostgreSQL in WebAssembly, in this process) with fstore's migrations. Needs @electric-sql/pglite. */
export async function pgliteDatabase(): Promise<FreshDatabase> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const pg = new PGlite();
  await migrate(pg);
  return { db: drizzle(pg), drop: () => pg.close() };
}

/**
 * A new database on the server at `serverUrl` (a role that may CREATE DATABASE), named `fstore_test_<random>`, with
 * fstore's migrations. Needs postgres (postgres.js). `max` is the pool's size (default 10).
 */
export async function postgresDatabase(
  serverUrl: string,
  { max = 10 }: { max?: number } = {},
): Promise<FreshPostgresDatabase> {
  const { default: postgres } = await import('postgres');
  const { drizzle } = await import('drizzle-orm/postgres-js');
  const name = `fstore_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max, onnotice: () => {} });
  try {
    await migrate(sql);
  } catch (error) {
    await sql.end();
    throw error;
  }
  return {
    db: drizzle(sql),
    url: url.toString(),
    async drop() {
      await sql.end({ timeout: 5 });
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} });
      try {
        await dropper.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await dropper.end();
      }
    },
  };
}
