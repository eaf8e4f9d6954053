/**
 * As root, the server runs as `postgres`, which cannot enter a checkout under a 0700 folder (`mktemp -d`, /root).
 * Then its programs run from a copy in a folder only root can write, under os.tmpdir(): one per build, made once
 * (staged beside it, renamed into place, so a half-made copy is never used) and checked before each reuse.
 */
import {
  chmodSync,
  copyFileSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  type Stats,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EmbeddedPostgresError } from './errors.js';

const marker = '.fstore-complete';
const staleStageMs = 60 * 60 * 1000;

export function defaultCacheRoot(): string {
  return join(tmpdir(), 'fstore-embedded-postgres');
}

/** A root-owned copy of `nativeDir` (a build's bin, lib and share) that every user can read: its path. */
export function stageNative(nativeDir: string, key: string, cacheRoot = defaultCacheRoot()): string {
  trustedRoot(cacheRoot);
  const target = join(cacheRoot, key);
  if (complete(target, key)) return target;
  removeStaleStages(cacheRoot);
  if (lstatSync(target, { throwIfNoEntry: false })) {
    // Only root can have put it there (the folder is closed to others), yet it fails the check: rebuild it. Moved
    // aside first, so that a copy another process renames into place meanwhile is never deleted.
    const broken = `${mkdtempSync(join(cacheRoot, '.stage-broken-'))}/entry`;
    try {
      renameSync(target, broken);
    } catch (error) {
      // Another process moved it first.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    rmSync(dirname(broken), { recursive: true, force: true });
  }
  const stage = mkdtempSync(join(cacheRoot, `.stage-${key}-`));
  try {
    copyTree(nativeDir, stage);
    writeFileSync(join(stage, marker), key, { mode: 0o644 });
    chmodSync(stage, 0o755);
    renameSync(stage, target);
  } catch (error) {
    rmSync(stage, { recursive: true, force: true });
    // Another process put its copy in place first: use it.
    if (complete(target, key)) return target;
    throw error;
  }
  return target;
}

/** The cache folder must be root's and closed to others: anyone who could write there could swap the programs. */
function trustedRoot(root: string): void {
  try {
    mkdirSync(root, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const stats = lstatSync(root);
  if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError(
      `${root} is not a folder that only root can write (owner uid ${stats.uid}, mode ${(stats.mode & 0o7777).toString(8)}): remove it, or set DATABASE_URL to a PostgreSQL server of your own`,
    );
  }
  // A umask such as 077 would leave it closed to the postgres user.
  if ((stats.mode & 0o755) !== 0o755) chmodSync(root, 0o755);
}

function complete(target: string, key: string): boolean {
  const folder = lstatSync(target, { throwIfNoEntry: false });
  const done = lstatSync(join(target, marker), { throwIfNoEntry: false });
  return (
    rootOnly(folder) &&
    folder?.isDirectory() === true &&
    rootOnly(done) &&
    done?.isFile() === true &&
    readFileSync(join(target, marker), 'utf8') === key
  );
}

function rootOnly(stats: Stats | undefined): boolean {
  return stats !== undefined && stats.uid === 0 && (stats.mode & 0o022) === 0;
}

/** Hard links where the file system allows and the file is already root's and readable by all, else copies. */
function copyTree(from: string, to: string): void {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) {
      mkdirSync(target);
      copyTree(source, target);
      chmodSync(target, 0o755);
    } else if (entry.isSymbolicLink()) {
      symlinkSync(readlinkSync(source), target);
    } else if (entry.isFile()) {
      copyFile(source, target);
    }
  }
}

function copyFile(source: string, target: string): void {
  const stats = lstatSync(source);
  const executable = (stats.mode & 0o100) !== 0;
  const readableByAll = (stats.mode & 0o444) === 0o444 && (!executable || (stats.mode & 0o111) === 0o111);
  if (rootOnly(stats) && readableByAll) {
    try {
      linkSync(source, target);
      return;
    } catch {
      // Another file system (EXDEV) or links refused: copy.
    }
  }
  copyFileSync(source, target);
  chmodSync(target, executable ? 0o755 : 0o644);
}

/** Stages left by a process that died while copying. */
function removeStaleStages(root: string): void {
  for (const name of readdirSync(root)) {
    if (!name.startsWith('.stage-')) continue;
    const stats = lstatSync(join(root, name), { throwIfNoEntry: false });
    if (stats && Date.now() - stats.mtimeMs > staleStageMs) {
      rmSync(join(root, name), { recursive: true, force: true });
    }
  }
}
