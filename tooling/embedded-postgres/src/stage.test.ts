/** The root-owned copy of the programs (stage.ts): made once, reused only when it passes the check. */
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { findBinaries } from './binaries.js';
import { EmbeddedPostgresError } from './errors.js';
import { stageNative } from './stage.js';
import { serverUser } from './user.js';

const root = process.getuid?.() === 0;

describe.skipIf(!root)('the copy of the programs (skipped when not root: only root makes it)', () => {
  const { nativeDir } = findBinaries('18');
  let cache = '';
  beforeEach(() => {
    cache = join(mkdtempSync(join(tmpdir(), 'fstore-stage-test-')), 'cache');
  });
  afterEach(() => {
    rmSync(join(cache, '..'), { recursive: true, force: true });
  });

  test('is made once, open to all and writable by root only, and reused', () => {
    const copy = stageNative(nativeDir, 'k1', cache);
    expect(copy).toBe(join(cache, 'k1'));
    for (const path of [cache, copy, join(copy, 'bin'), join(copy, 'bin', 'postgres')]) {
      const stats = statSync(path);
      expect(stats.uid).toBe(0);
      expect(stats.mode & 0o777).toBe(0o755);
    }
    expect(readFileSync(join(copy, '.fstore-complete'), 'utf8')).toBe('k1');
    // On the same file system, hard links: no 59 MB copy.
    const [copied, original] = [join(copy, 'bin', 'postgres'), join(nativeDir, 'bin', 'postgres')].map(
      (path) => statSync(path),
    );
    if (copied?.dev === original?.dev) expect(copied?.ino).toBe(original?.ino);
    const made = lstatSync(join(copy, '.fstore-complete')).ino;
    expect(stageNative(nativeDir, 'k1', cache)).toBe(copy);
    expect(lstatSync(join(copy, '.fstore-complete')).ino).toBe(made);
  });

  test('a copy that others could have changed is made again', () => {
    const copy = stageNative(nativeDir, 'k2', cache);
    // What someone else could have put there; a rebuilt copy holds only the programs. (Not an inode comparison:
    // a new file may get the number of the one just deleted.)
    writeFileSync(join(copy, 'bin', 'planted'), 'x');
    chmodSync(copy, 0o777);
    expect(stageNative(nativeDir, 'k2', cache)).toBe(copy);
    expect(statSync(copy).mode & 0o777).toBe(0o755);
    expect(existsSync(join(copy, 'bin', 'planted'))).toBe(false);
    expect(readFileSync(join(copy, '.fstore-complete'), 'utf8')).toBe('k2');
  });

  test('a copy without its completion marker is made again', () => {
    const copy = stageNative(nativeDir, 'k3', cache);
    rmSync(join(copy, '.fstore-complete'));
    stageNative(nativeDir, 'k3', cache);
    expect(readFileSync(join(copy, '.fstore-complete'), 'utf8')).toBe('k3');
  });

  test('a cache folder another user owns is refused, in one line', () => {
    stageNative(nativeDir, 'k4', cache);
    const user = serverUser('18');
    if (!user) throw new Error('root without a postgres user');
    chownSync(cache, user.uid, user.gid);
    expect(() => stageNative(nativeDir, 'k4', cache)).toThrow(EmbeddedPostgresError);
    expect(() => stageNative(nativeDir, 'k4', cache)).toThrow(
      `${cache} is not a folder that only root can write (owner uid ${user.uid}, mode 755): remove it`,
    );
  });
});
