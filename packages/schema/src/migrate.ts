import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readMigrationFiles } from 'drizzle-orm/migrator';

/** Where fstore records which of its migrations ran. Never the host application's table: see the README. */
export const migrationsTable = '__fstore_migrations';
export const migrationsSchema = 'fstore';

/** The folder that holds fstore's SQL migrations and drizzle-kit journal. It ships inside the package. */
export const migrationsFolder: string = fileURLToPath(new URL('../migrations', import.meta.url));

/** A postgres.js client (`postgres(url)`): the default driver. */
export interface PostgresJsClient {
  begin<T>(
    fn: (tx: { unsafe(query: string, parameters?: unknown[]): PromiseLike<unknown> }) => Promise<T>,
  ): Promise<unknown>;
}

/** A PGlite instance (`new PGlite()`), for in-process use. */
export interface PGliteClient {
  transaction<T>(
    fn: (tx: { query(query: string, parameters?: unknown[]): Promise<unknown> }) => Promise<T>,
  ): Promise<T>;
  waitReady?: Promise<void>;
}

export type MigrationClient = PostgresJsClient | PGliteClient;

export interface MigrateResult {
  /** The migrations applied by this call, by tag (file name without `.sql`), in order. Empty when up to date. */
  applied: string[];
}

type Run = (query: string, parameters?: unknown[]) => Promise<Record<string, unknown>[]>;

// Any 64-bit key works as long as every fstore migrator uses the same one: ASCII "fstoremg".
const migrationLockKey = '7310593858808524135';

/**
 * Installs or upgrades fstore's tables and SQL API, with postgres.js or PGlite.
 *
 * It reads the same migrations folder and records them in the same table, in the same format, as
 * `drizzle-kit migrate` with fstore's drizzle.config, so the two can be mixed. Unlike drizzle's own migrator it
 * takes a transaction-scoped advisory lock first, so processes that start at once (replicas of one service) do not
 * race: one applies, the others wait and then find nothing to do. Everything pending runs in one transaction.
 */
export async function migrate(client: MigrationClient): Promise<MigrateResult> {
  if ('begin' in client) {
    let result: MigrateResult = { applied: [] };
    await client.begin(async (tx) => {
      result = await applyPending(async (query, parameters) => {
        const rows = await tx.unsafe(query, parameters);
        return rows as Record<string, unknown>[];
      });
    });
    return result;
  }
  await client.waitReady;
  return client.transaction((tx) =>
    applyPending(async (query, parameters) => {
      const result = (await tx.query(query, parameters)) as { rows: Record<string, unknown>[] };
      return result.rows;
    }),
  );
}

async function applyPending(run: Run): Promise<MigrateResult> {
  const migrations = readMigrationFiles({ migrationsFolder });
  const tags = readTags();
  await run(`SELECT pg_advisory_xact_lock(${migrationLockKey})`);
  await run(`CREATE SCHEMA IF NOT EXISTS "${migrationsSchema}"`);
  await run(
    `CREATE TABLE IF NOT EXISTS "${migrationsSchema}"."${migrationsTable}" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`,
  );
  const [last] = await run(
    `SELECT created_at FROM "${migrationsSchema}"."${migrationsTable}" ORDER BY created_at DESC LIMIT 1`,
  );
  // drizzle's rule, kept so that this function and `drizzle-kit migrate` agree: what is newer than the newest
  // recorded migration is pending. CI checks that the journal's timestamps strictly increase.
  const lastMillis = last ? Number(last.created_at) : Number.NEGATIVE_INFINITY;
  const applied: string[] = [];
  for (const [index, migration] of migrations.entries()) {
    if (migration.folderMillis <= lastMillis) continue;
    for (const statement of migration.sql) {
      if (statement.trim() !== '') await run(statement);
    }
    await run(`INSERT INTO "${migrationsSchema}"."${migrationsTable}" (hash, created_at) VALUES ($1, $2)`, [
      migration.hash,
      migration.folderMillis,
    ]);
    applied.push(tags[index] ?? String(migration.folderMillis));
  }
  return { applied };
}

function readTags(): string[] {
  // readMigrationFiles does not return the tags; the journal has them in the same order.
  const journal = JSON.parse(readFileSync(`${migrationsFolder}/meta/_journal.json`, 'utf8')) as {
    entries: { tag: string }[];
  };
  return journal.entries.map((entry) => entry.tag);
}
