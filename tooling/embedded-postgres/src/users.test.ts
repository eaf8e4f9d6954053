/**
 * Who runs the server. As root it runs as `postgres`, which must reach the programs even from a checkout under a 0700
 * folder (`mktemp -d`, /root); as any other user it runs as that user, from the checkout.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { describe, expect, test } from 'vitest';
import { findBinaries } from './binaries.js';
import { startEmbeddedPostgres } from './index.js';
import { defaultCacheRoot } from './stage.js';
import { runTs } from './test-support/run.js';
import { canRun, serverUser } from './user.js';

const root = process.getuid?.() === 0;

describe.skipIf(!root)('as root (skipped when not root: only root runs the server as another user)', () => {
  test('from a checkout under a 0700 folder, the server runs as postgres from a copy it can reach', async () => {
    const closed = mkdtempSync(join(tmpdir(), 'fstore-closed-'));
    try {
      expect(statSync(closed).mode & 0o777).toBe(0o700);
      // The platform package as a checkout under `mktemp -d` holds it (hard links: no 59 MB copy).
      const packageDir = join(closed, 'linux-x64');
      execFileSync('cp', ['-a', '--link', dirname(findBinaries('18').nativeDir), packageDir]);
      const user = serverUser('18');
      if (!user) throw new Error('root without a postgres user');
      // The bug as it was: postgres cannot run the programs where they are.
      expect(canRun(join(packageDir, 'native', 'bin', 'postgres'), user)).toBe(false);

      const server = await startEmbeddedPostgres({ version: '18', packageDir });
      try {
        const sql = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
        const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        expect(statSync(`/proc/${row?.pid}`).uid).toBe(user.uid);
        expect(readlinkSync(`/proc/${row?.pid}/exe`)).toBe(
          join(defaultCacheRoot(), findBinaries('18', packageDir).key, 'bin', 'postgres'),
        );
        await sql.end();
      } finally {
        await server.destroy();
      }
    } finally {
      rmSync(closed, { recursive: true, force: true });
    }
  });
});

describe('as a user other than root', () => {
  test('the server runs as that user, from the checkout', async (context) => {
    const other = root ? lookup('nobody') : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const fixture = 'src/test-support/cli.ts';
    if (root) {
      // The checkout must be open to that user (it is not under `mktemp -d`): node, tsx and this package.
      const reach = spawnSync(process.execPath, ['-e', 'require("tsx"); require("postgres")'], {
        ...other,
        cwd: dirname(new URL(import.meta.url).pathname),
      });
      context.skip(reach.status !== 0, `user nobody (${other.uid}) cannot reach this checkout`);
    }
    const ran = await runTs(fixture, [], { as: root ? other : undefined });
    expect(ran.stderr).toBe('');
    expect(ran.code).toBe(0);
    const seen = JSON.parse(ran.stdout) as { uid: number; serverUid: number; exe: string };
    expect(seen.uid).toBe(other.uid);
    expect(seen.serverUid).toBe(other.uid);
    expect(seen.exe).toBe(findBinaries('18').postgres);
  });
});

function lookup(name: string): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}
