/**
 * A host application that lives in its own pnpm monorepo, with its own Drizzle tables and migrations, installs
 * @fstore/schema and runs fstore's migrations with its own drizzle-kit, next to its own: two drizzle configs, two
 * migrations tables, in either order, and running them again does nothing.
 *
 * The host workspace is built in a temporary folder and installed once with `pnpm install --offline` (every package
 * it needs is already in the pnpm store of a machine that installed this repository).
 */
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { readMigrationFiles } from 'drizzle-orm/migrator';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const repositoryDir = join(packageDir, '..', '..');

interface Journal {
  entries: { idx: number; when: number; tag: string }[];
}

const readJournal = (migrationsDir: string): Journal =>
  JSON.parse(readFileSync(join(migrationsDir, 'meta', '_journal.json'), 'utf8')) as Journal;

/** The exact versions this repository's catalog pins, so the host installs what the store already holds. */
function catalogVersion(name: string): string {
  const workspace = readFileSync(join(repositoryDir, 'pnpm-workspace.yaml'), 'utf8');
  const line = new RegExp(`^\\s+"?${name}"?:\\s*(\\S+)\\s*$`, 'm').exec(workspace);
  if (!line?.[1]) throw new Error(`no ${name} in the catalog of pnpm-workspace.yaml`);
  return line[1];
}

/** The `allowBuilds:` block of this repository's pnpm-workspace.yaml: pnpm 12 refuses unapproved build scripts. */
function allowBuilds(): string {
  const workspace = readFileSync(join(repositoryDir, 'pnpm-workspace.yaml'), 'utf8');
  const block = /^allowBuilds:\n(?:[ \t]+\S.*\n?)+/m.exec(workspace);
  if (!block) throw new Error('no allowBuilds block in pnpm-workspace.yaml');
  return block[0];
}

interface Run {
  command: string;
  code: number | null;
  output: string;
}

/** Runs a command to its end and returns its exit code and everything it printed (never throws). */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  // Outside this repository's pnpm run: npm_* variables would make the host's pnpm act for this workspace.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd, env: { ...inherited, FORCE_COLOR: '0', ...env }, maxBuffer: 16 * 1024 * 1024, timeout: 180_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ command: `${command} ${args.join(' ')}`, code, output: `${stdout}\n${stderr}`.trim() });
      },
    );
  });
}

function succeeded(result: Run): Run {
  if (result.code !== 0) throw new Error(`${result.command} failed (exit ${result.code}):\n${result.output}`);
  return result;
}

// What the host writes: the files a README would show.
const hostSchema = `import { integer, pgTable, serial, text, timestamp } from 'drizzle-orm/pg-core';

export const orders = pgTable('orders', {
  id: serial('id').primaryKey(),
  customer: text('customer').notNull(),
  quantity: integer('quantity').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
`;

const hostConfig = `import { defineConfig } from 'drizzle-kit';

// The application's own tables and migrations, in drizzle's default migrations table.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema.ts',
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL! },
});
`;

const fstoreConfig = `import { defineConfig } from 'drizzle-kit';

// fstore's migrations ship in @fstore/schema and keep their own migrations table.
export default defineConfig({
  dialect: 'postgresql',
  out: './node_modules/@fstore/schema/migrations',
  dbCredentials: { url: process.env.DATABASE_URL! },
  migrations: { table: '__fstore_migrations', schema: 'fstore' },
});
`;

let hostDir = '';
let appDir = '';

beforeAll(async () => {
  hostDir = mkdtempSync(join(tmpdir(), 'fstore-host-'));
  appDir = join(hostDir, 'app');
  writeFileSync(
    join(hostDir, 'package.json'),
    `${JSON.stringify({ name: 'host', private: true }, null, 2)}\n`,
  );
  writeFileSync(
    join(hostDir, 'pnpm-workspace.yaml'),
    `packages:\n  - app\n  - fstore-schema\n\n${allowBuilds()}`,
  );

  // @fstore/schema as it is published: its package.json and the files it lists. A consumer never installs its
  // devDependencies (which name this repository's catalog and workspace), so they are left out.
  const fstoreDir = join(hostDir, 'fstore-schema');
  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as {
    files: string[];
    devDependencies?: unknown;
    scripts?: unknown;
  };
  delete manifest.devDependencies;
  delete manifest.scripts;
  mkdirSync(fstoreDir);
  writeFileSync(join(fstoreDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  expect(manifest.files).toContain('migrations');
  for (const file of manifest.files) {
    // dist exists only after a build; the migrations are what this test needs.
    if (existsSync(join(packageDir, file))) {
      cpSync(join(packageDir, file), join(fstoreDir, file), { recursive: true });
    }
  }

  mkdirSync(join(appDir, 'src'), { recursive: true });
  const app = {
    name: 'app',
    private: true,
    type: 'module',
    dependencies: {
      '@fstore/schema': 'workspace:*',
      'drizzle-orm': catalogVersion('drizzle-orm'),
      postgres: catalogVersion('postgres'),
    },
    devDependencies: { 'drizzle-kit': catalogVersion('drizzle-kit') },
  };
  writeFileSync(join(appDir, 'package.json'), `${JSON.stringify(app, null, 2)}\n`);
  writeFileSync(join(appDir, 'src', 'schema.ts'), hostSchema);
  writeFileSync(join(appDir, 'drizzle.config.ts'), hostConfig);
  writeFileSync(join(appDir, 'drizzle.fstore.config.ts'), fstoreConfig);

  // No lockfile yet, and CI=true would make pnpm insist on one.
  const offline = await run('pnpm', ['install', '--offline', '--no-frozen-lockfile'], hostDir);
  if (offline.code !== 0) {
    const online = await run('pnpm', ['install', '--prefer-offline', '--no-frozen-lockfile'], hostDir);
    if (online.code !== 0) {
      throw new Error(`pnpm install failed offline:\n${offline.output}\n\nand online:\n${online.output}`);
    }
  }
  // The host generates its own migrations, as it would in its repository.
  const generate = succeeded(
    await run(
      'pnpm',
      ['exec', 'drizzle-kit', 'generate', '--config', 'drizzle.config.ts', '--name', 'orders'],
      appDir,
    ),
  );
  // drizzle-kit generate exits 0 even when it fails: check what it wrote.
  expect(existsSync(join(appDir, 'drizzle', '0000_orders.sql')), generate.output).toBe(true);
}, 240_000);

afterAll(() => {
  if (hostDir) rmSync(hostDir, { recursive: true, force: true });
});

interface MigrationSet {
  name: string;
  config: string;
  folder(): string;
  table: string;
}

const hostSet: MigrationSet = {
  name: 'host',
  config: 'drizzle.config.ts',
  folder: () => join(appDir, 'drizzle'),
  table: 'drizzle.__drizzle_migrations',
};

const fstoreSet: MigrationSet = {
  name: 'fstore',
  config: 'drizzle.fstore.config.ts',
  folder: () => join(appDir, 'node_modules', '@fstore', 'schema', 'migrations'),
  table: 'fstore.__fstore_migrations',
};

async function migrateWith(set: MigrationSet, db: TestDatabase): Promise<Run> {
  const result = await run('pnpm', ['exec', 'drizzle-kit', 'migrate', '--config', set.config], appDir, {
    DATABASE_URL: db.url,
  });
  // drizzle-kit migrate exits 1 without printing the database's error (its progress view swallows it), so replay
  // the pending statements to show what failed.
  const explanation =
    result.code === 0 ? '' : `\n\nReplayed with postgres.js: ${await replayPending(set, db)}`;
  expect(result.code, `${result.command}\n${result.output}${explanation}`).toBe(0);
  return result;
}

/** Runs the statements drizzle-kit would have run, in a transaction rolled back, and returns the first error. */
async function replayPending(set: MigrationSet, db: TestDatabase): Promise<string> {
  const newest = Math.max(Number.NEGATIVE_INFINITY, ...(await recorded(db, set.table)));
  const pending = readMigrationFiles({ migrationsFolder: set.folder() }).filter(
    (migration) => migration.folderMillis > newest,
  );
  const rolledBack = new Error('rolled back');
  try {
    await db.sql.begin(async (tx) => {
      for (const migration of pending) {
        for (const statement of migration.sql) {
          if (statement.trim() === '') continue;
          try {
            await tx.unsafe(statement);
          } catch (error) {
            throw new Error(
              `${(error as Error).message}\nin the statement:\n${statement.trim().slice(0, 500)}`,
            );
          }
        }
      }
      throw rolledBack;
    });
  } catch (error) {
    if (error !== rolledBack) return (error as Error).message;
  }
  return 'no error (so drizzle-kit failed before running SQL: see its output above)';
}

/** The `created_at` of each row of a drizzle migrations table: the journal `when` of each applied migration. */
async function recorded(db: TestDatabase, table: string): Promise<number[]> {
  const [exists] = await db.sql<{ found: string | null }[]>`SELECT to_regclass(${table})::text AS found`;
  if (!exists?.found) return [];
  const rows = await db.sql.unsafe<{ created_at: string }[]>(`SELECT created_at FROM ${table} ORDER BY id`);
  return rows.map((row) => Number(row.created_at));
}

async function functionsNamed(db: TestDatabase, names: string[]): Promise<string[]> {
  const rows = await db.sql<{ proname: string }[]>`
    SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY(${names}) ORDER BY proname`;
  return rows.map((row) => row.proname);
}

const orders = {
  'host then fstore': [hostSet, fstoreSet],
  'fstore then host': [fstoreSet, hostSet],
};

describe("a host monorepo runs fstore's migrations with its own drizzle-kit, next to its own", () => {
  it.each(Object.entries(orders))(
    '%s: both sets apply, each recorded in its own table, and running both again applies nothing',
    async (_order, sets) => {
      const db = await createTestDatabase({ from: 'empty' });
      onTestFinished(() => db.drop());
      const fstoreWhens = readJournal(
        join(appDir, 'node_modules', '@fstore', 'schema', 'migrations'),
      ).entries.map((entry) => entry.when);
      const hostWhens = readJournal(join(appDir, 'drizzle')).entries.map((entry) => entry.when);
      expect(fstoreWhens.length).toBeGreaterThan(0);
      expect(hostWhens).toHaveLength(1);

      const first = [];
      for (const set of sets) first.push(await migrateWith(set, db));
      const output = first.map((result) => `${result.command}\n${result.output}`).join('\n\n');

      // Both sets applied: the host's table, fstore's tables and SQL API.
      const [tables] = await db.sql<{ orders: string | null; events: string | null }[]>`
        SELECT to_regclass('public.orders')::text AS orders, to_regclass('public.events')::text AS events`;
      expect(tables, output).toEqual({ orders: 'orders', events: 'events' });
      expect(await functionsNamed(db, ['append_event', 'stream_events']), output).toEqual([
        'append_event',
        'stream_events',
      ]);
      // Each set recorded in its own table, one row per journal entry, and nothing of the other's.
      expect(await recorded(db, fstoreSet.table), output).toEqual(fstoreWhens);
      expect(await recorded(db, hostSet.table), output).toEqual(hostWhens);

      // Again, in the same order: nothing is pending.
      const again = [];
      for (const set of sets) again.push(await migrateWith(set, db));
      const againOutput = again.map((result) => `${result.command}\n${result.output}`).join('\n\n');
      expect(await recorded(db, fstoreSet.table), againOutput).toEqual(fstoreWhens);
      expect(await recorded(db, hostSet.table), againOutput).toEqual(hostWhens);
    },
  );
});
