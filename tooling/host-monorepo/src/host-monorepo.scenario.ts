/**
 * A host pnpm monorepo takes fstore in, the two ways docs/monorepo.md describes, and uses it from a strict
 * NodeNext app:
 * - vendored: fstore's tree in `vendor/fstore` (a git submodule or subtree), `vendor/fstore/packages/*` in the
 *   host's workspace globs, built by the host;
 * - packed: `pnpm pack` tarballs of the three public packages, installed by path.
 * Either way the host copies nothing of ours (no catalog, no patch, no build approvals of our tools), migrates with
 * its own drizzle-kit and the drizzle config of docs/monorepo.md, appends through the command handler with colliding
 * writers, and projects into its own table. Installs run `--offline`: the pnpm store of a machine that installed
 * this repository holds every package a host needs.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { readmeBlocks } from '@fstore/test-harness/readme';
import { afterAll, describe, expect, test } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const repositoryDir = join(packageDir, '..', '..');
const fixtureDir = join(packageDir, 'fixture');
const publicPackages = ['schema', 'store', 'stream'] as const;
// Generous: installs and builds on a busy two-core machine; a slow machine must not fail this suite.
const stepTimeoutMs = 600_000;

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
      {
        cwd,
        env: { ...inherited, FORCE_COLOR: '0', CI: 'true', ...env },
        maxBuffer: 64 * 1024 * 1024,
        timeout: stepTimeoutMs,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ command: `${command} ${args.join(' ')}`, code, output: `${stdout}\n${stderr}`.trim() });
      },
    );
  });
}

async function succeeded(pending: Promise<Run>): Promise<Run> {
  const result = await pending;
  if (result.code !== 0) throw new Error(`${result.command} failed (exit ${result.code}):\n${result.output}`);
  return result;
}

/** The exact version this repository pins, so that an offline install finds it in the store. */
function pinned(name: string): string {
  const workspace = readFileSync(join(repositoryDir, 'pnpm-workspace.yaml'), 'utf8');
  const line = new RegExp(`^\\s+"?${name}"?:\\s*(\\S+)\\s*$`, 'm').exec(workspace);
  if (!line?.[1]) throw new Error(`no ${name} in the catalog of pnpm-workspace.yaml`);
  return line[1];
}

/** The host's own files: its app (strict NodeNext), its drizzle config and migrations, and fstore's from the docs. */
function writeHost(hostDir: string, fstoreDependencies: Record<string, string>, workspace: string): string {
  writeFileSync(
    join(hostDir, 'package.json'),
    `${JSON.stringify({ name: 'host', private: true }, null, 2)}\n`,
  );
  // The host's own build approval: its drizzle-kit needs esbuild. Nothing of fstore's is approved here.
  writeFileSync(join(hostDir, 'pnpm-workspace.yaml'), `${workspace}\nallowBuilds:\n  esbuild: true\n`);
  const appDir = join(hostDir, 'app');
  cpSync(join(fixtureDir, 'app'), appDir, { recursive: true });
  const [fstoreConfig] = readmeBlocks('drizzle-fstore-config', 'ts', 'docs/monorepo.md');
  if (!fstoreConfig) throw new Error('docs/monorepo.md has no drizzle-fstore-config block');
  writeFileSync(join(appDir, 'drizzle.fstore.config.ts'), fstoreConfig);
  const app = {
    name: 'app',
    private: true,
    type: 'module',
    scripts: { build: 'tsc -p tsconfig.json', start: 'node dist/main.js' },
    dependencies: {
      ...fstoreDependencies,
      'drizzle-orm': pinned('drizzle-orm'),
      postgres: pinned('postgres'),
    },
    devDependencies: {
      '@types/node': pinned('@types/node'),
      'drizzle-kit': pinned('drizzle-kit'),
      typescript: pinned('typescript'),
    },
  };
  writeFileSync(join(appDir, 'package.json'), `${JSON.stringify(app, null, 2)}\n`);
  return appDir;
}

/** Migrates (fstore's and the host's, in the given order, twice), type-checks and builds the app, runs it. */
async function migrateBuildAndRun(appDir: string, database: TestDatabase, fstoreFirst: boolean) {
  const env = { DATABASE_URL: database.url };
  const host = ['exec', 'drizzle-kit', 'migrate'];
  const fstore = [...host, '--config', 'drizzle.fstore.config.ts'];
  for (let pass = 0; pass < 2; pass++) {
    for (const args of fstoreFirst ? [fstore, host] : [host, fstore]) {
      await succeeded(run('pnpm', args, appDir, env));
    }
  }
  const [migrations] = await database.sql<{ fstore: number; host: number }[]>`
    SELECT (SELECT count(*)::int FROM fstore.__fstore_migrations) AS fstore,
           (SELECT count(*)::int FROM drizzle.__drizzle_migrations) AS host`;
  const journal = JSON.parse(
    readFileSync(join(repositoryDir, 'packages', 'schema', 'migrations', 'meta', '_journal.json'), 'utf8'),
  ) as { entries: unknown[] };
  expect(migrations).toEqual({ fstore: journal.entries.length, host: 1 });

  await succeeded(run('pnpm', ['run', 'build'], appDir));
  const { output } = await succeeded(run('pnpm', ['run', '--silent', 'start'], appDir, env));
  const report = JSON.parse(output.split('\n').find((line) => line.startsWith('{')) ?? 'null') as {
    commands: number;
    conflicts: number;
    projected: { account: string; balance: number; movements: number }[];
    fromLog: { account: string; balance: number; events: number }[];
  };
  expect(report.commands).toBeGreaterThanOrEqual(24);
  expect(report.conflicts, 'the writers never collided').toBeGreaterThan(0);
  // The read model in the host's own table agrees with the log, account by account.
  const byAccount = <T extends { account: string }>(rows: T[]) =>
    [...rows].sort((a, b) => a.account.localeCompare(b.account));
  expect(
    byAccount(report.projected).map(({ account, balance, movements }) => ({ account, balance, movements })),
  ).toEqual(
    byAccount(report.fromLog).map(({ account, balance, events }) => ({
      account,
      balance,
      movements: events,
    })),
  );
  const [log] = await database.sql<{ events: number; commands: number }[]>`
    SELECT count(*)::int AS events, count(DISTINCT command_id)::int AS commands FROM events`;
  expect(log?.events).toBe(report.fromLog.reduce((sum, row) => sum + row.events, 0));
  // Each command appended at most one event, once, however often it was decided again.
  expect(log?.commands).toBe(log?.events);
}

/** The tracked files of this repository (and new ones not ignored), as a submodule checkout would hold them. */
async function copyRepository(target: string) {
  const { output } = await succeeded(
    run('git', ['ls-files', '--cached', '--others', '--exclude-standard'], repositoryDir),
  );
  for (const file of output.split('\n').filter(Boolean)) {
    const from = join(repositoryDir, file);
    try {
      mkdirSync(dirname(join(target, file)), { recursive: true });
      cpSync(from, join(target, file));
    } catch (error) {
      // A file deleted in the working tree but still tracked: a checkout of the working tree would not hold it.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
}

const workDirs: string[] = [];
const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.drop()));
  for (const dir of workDirs) rmSync(dir, { recursive: true, force: true });
});

describe('a host monorepo', () => {
  test(
    'vendored: vendor/fstore/packages/* in its workspace globs install, build and run, with no catalog or patch of ours',
    async () => {
      const hostDir = mkdtempSync(join(tmpdir(), 'fstore-host-vendored-'));
      workDirs.push(hostDir);
      await copyRepository(join(hostDir, 'vendor', 'fstore'));
      const appDir = writeHost(
        hostDir,
        Object.fromEntries(publicPackages.map((name) => [`@fstore/${name}`, 'workspace:*'])),
        'packages:\n  - app\n  - vendor/fstore/packages/*\n',
      );
      await succeeded(run('pnpm', ['install', '--offline'], hostDir));
      // The host builds fstore's packages with their own build scripts, in dependency order.
      await succeeded(run('pnpm', ['--filter', './vendor/fstore/packages/*', 'run', 'build'], hostDir));
      const database = await createTestDatabase({ from: 'empty' });
      databases.push(database);
      await migrateBuildAndRun(appDir, database, false);
    },
    stepTimeoutMs * 3,
  );

  test(
    'packed: pnpm pack tarballs hold dist, types and migrations, no catalog: or workspace:, and install by path',
    async () => {
      const hostDir = mkdtempSync(join(tmpdir(), 'fstore-host-packed-'));
      workDirs.push(hostDir);
      const tarballs = join(hostDir, 'tarballs');
      mkdirSync(tarballs);
      for (const name of publicPackages) {
        await succeeded(
          run('pnpm', ['pack', '--pack-destination', tarballs], join(repositoryDir, 'packages', name)),
        );
      }
      const files = Object.fromEntries(
        publicPackages.map((name) => [
          name,
          readdirSync(tarballs).find((file) => file.startsWith(`fstore-${name}-`)),
        ]),
      );
      for (const name of publicPackages) {
        const tarball = join(tarballs, files[name] as string);
        const { output: listing } = await succeeded(run('tar', ['-tzf', tarball], tarballs));
        expect(listing).toContain('package/dist/index.js');
        expect(listing).toContain('package/dist/index.d.ts');
        expect(listing).not.toMatch(/\.test\.(ts|js)$/m);
        if (name === 'schema') expect(listing).toContain('package/migrations/meta/_journal.json');
        const { output: manifest } = await succeeded(
          run('tar', ['-xzOf', tarball, 'package/package.json'], tarballs),
        );
        expect(manifest).not.toMatch(/"(catalog|workspace):/);
      }
      // A tarball's own dependency on another (@fstore/store on @fstore/schema) must come from its tarball too.
      const byPath = Object.fromEntries(
        publicPackages.map((name) => [`@fstore/${name}`, `file:../tarballs/${files[name]}`]),
      );
      const overrides = publicPackages
        .map((name) => `  "@fstore/${name}": "file:./tarballs/${files[name]}"`)
        .join('\n');
      const appDir = writeHost(hostDir, byPath, `packages:\n  - app\n\noverrides:\n${overrides}\n`);
      await succeeded(run('pnpm', ['install', '--offline'], hostDir));
      // OpenTelemetry is an optional peer: this host has none, so the run below is fstore without it.
      const installed = readdirSync(join(hostDir, 'node_modules', '.pnpm'));
      expect(installed.filter((dir) => dir.startsWith('@opentelemetry+api@'))).toEqual([]);
      const database = await createTestDatabase({ from: 'empty' });
      databases.push(database);
      await migrateBuildAndRun(appDir, database, true);
    },
    stepTimeoutMs * 3,
  );
});
