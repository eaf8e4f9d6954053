/**
 * Builds the packages a deployed worker runs (their dist), so that M1 and I1 measure the code of this checkout, not
 * an older build: the command a release runs before packing. Skipped when every dist is newer than its sources.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const packages = ['schema', 'store', 'stream'];

/** The newest modification time of the files under `folder` (0 when there are none). */
function newest(folder: string): number {
  let time = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) time = Math.max(time, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return time;
}

function upToDate(name: string): boolean {
  try {
    return newest(join(root, 'packages', name, 'dist')) >= newest(join(root, 'packages', name, 'src'));
  } catch {
    return false;
  }
}

export function buildPackages(log: (message: string) => void) {
  if (packages.every(upToDate)) {
    log('the packages’ dist is newer than their sources: the deployed worker runs it as it is');
    return;
  }
  log('building @fstore/schema, @fstore/store and @fstore/stream (dist) for the deployed worker');
  const result = spawnSync(
    'pnpm',
    packages.flatMap((name) => ['--filter', `@fstore/${name}`]).concat('build'),
    {
      cwd: root,
      encoding: 'utf8',
    },
  );
  if (result.status !== 0)
    throw new Error(
      `building the packages failed (exit ${result.status}):\n${result.stdout}${result.stderr}`,
    );
}
