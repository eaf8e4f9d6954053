/**
 * Hosts the demo's embedded PostgreSQL in a process of its own, in its own process group: Ctrl-C in the terminal
 * reaches the demo (which then stops its workers cleanly) but not the database, which the demo stops last. It
 * reports the connection URL over IPC, stops the server on 'stop' or when the demo goes away, and on 'keep' lets
 * the demo exit and stays up (`pnpm demo --keep`) until it gets SIGTERM.
 */
import { EmbeddedPostgresError, startEmbeddedPostgres, withDatabase } from '@fstore/embedded-postgres';
import postgres from 'postgres';

/** Tells the demo why there is no database (one line, over IPC and on stderr), and ends. */
function fail(line: string): never {
  process.send?.({ error: line });
  console.error(line);
  process.exit(1);
}

const server = await startEmbeddedPostgres().catch((error: unknown) =>
  fail(
    error instanceof EmbeddedPostgresError
      ? error.message
      : `embedded PostgreSQL cannot start: ${String(error)}`,
  ),
);
try {
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  await admin`CREATE DATABASE fstore_demo`;
  await admin.end();
} catch (error) {
  await server.destroy().catch(() => {});
  fail(
    `the embedded PostgreSQL started, but creating the demo's database failed: ${(error as Error).message}`,
  );
}

let keep = false;
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.destroy();
  process.exit(0);
};
process.on('message', (message) => {
  if (message === 'stop') void stop();
  if (message === 'keep') keep = true;
});
process.on('disconnect', () => {
  if (!keep) void stop();
});
process.on('SIGTERM', () => void stop());
process.send?.({
  url: withDatabase(server.adminUrl, 'fstore_demo'),
  description: server.description,
  pid: process.pid,
});
