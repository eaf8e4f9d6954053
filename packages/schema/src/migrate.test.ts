import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { afterAll, describe, expect, test } from 'vitest';
import { migrate, migrationsFolder, migrationsSchema, migrationsTable } from './migrate.js';

const journal = JSON.parse(readFileSync(`${migrationsFolder}/meta/_journal.json`, 'utf8')) as {
  entries: { tag: string; when: number }[];
};
const allTags = journal.entries.map((entry) => entry.tag);
const apiFunctions = [
  'register_decider_event',
  'append_event',
  'get_events',
  'get_last_event',
  'register_view',
  'stream_events',
  'ack_event',
  'nack_event',
  'schedule_nack_event',
  'append_events',
  'lease_events',
  'ack_events',
  'renew_lease',
  'release_lease',
  'fail_event',
  'list_parked_events',
  'retry_parked_event',
  'discard_parked_event',
  'reset_view',
  'view_status',
  'set_wakeups',
];

const databases: TestDatabase[] = [];
afterAll(() => Promise.all(databases.map((db) => db.drop())));
async function emptyDatabase() {
  const db = await createTestDatabase({ from: 'empty' });
  databases.push(db);
  return db;
}

async function installedFunctions(db: TestDatabase): Promise<string[]> {
  const rows = await db.sql<{ name: string }[]>`
    SELECT DISTINCT proname AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1`;
  return rows.map((row) => row.name);
}

describe('migrate() with postgres.js', () => {
  test('installs the tables and the whole SQL API on an empty database, and records each migration', async () => {
    const db = await emptyDatabase();
    expect(await migrate(db.sql)).toEqual({ applied: allTags });
    expect(await installedFunctions(db)).toEqual(expect.arrayContaining(apiFunctions));
    const recorded = await db.sql.unsafe(
      `SELECT hash, created_at FROM "${migrationsSchema}"."${migrationsTable}" ORDER BY id`,
    );
    expect(recorded.map((row) => Number(row.created_at))).toEqual(journal.entries.map((entry) => entry.when));
    for (const row of recorded) expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test("a second run applies nothing, and the host's drizzle table is never touched", async () => {
    const db = await emptyDatabase();
    await migrate(db.sql);
    expect(await migrate(db.sql)).toEqual({ applied: [] });
    const [row] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = 'drizzle'`;
    expect(row?.n).toBe(0);
  });

  test('two processes migrating one database at once both succeed and install everything once', async () => {
    const db = await emptyDatabase();
    const run = promisify(execFile);
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const script = fileURLToPath(new URL('./test-support/migrate-process.ts', import.meta.url));
    const outputs = await Promise.all(
      [1, 2].map(() => run(process.execPath, ['--import', tsx, script, db.url], { timeout: 60_000 })),
    );
    const applied = outputs.map(({ stdout }) => (JSON.parse(stdout) as { applied: string[] }).applied);
    expect(applied.flat().sort()).toEqual([...allTags].sort());
    const [row] = await db.sql.unsafe(
      `SELECT count(*)::int AS n FROM "${migrationsSchema}"."${migrationsTable}"`,
    );
    expect(row?.n).toBe(allTags.length);
    expect(await installedFunctions(db)).toEqual(expect.arrayContaining(apiFunctions));
  });
});

describe('migrate() with PGlite', () => {
  test('installs everything in process, and a second run applies nothing', async () => {
    const pg = new PGlite();
    try {
      expect(await migrate(pg)).toEqual({ applied: allTags });
      expect(await migrate(pg)).toEqual({ applied: [] });
      const { rows } = await pg.query<{ name: string }>(
        `SELECT DISTINCT proname AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace`,
      );
      expect(rows.map((row) => row.name)).toEqual(expect.arrayContaining(apiFunctions));
    } finally {
      await pg.close();
    }
  });
});
