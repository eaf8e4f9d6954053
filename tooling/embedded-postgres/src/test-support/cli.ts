/**
 * A small command-line program over the package, for tests that look at what a CLI prints: starts a server (on
 * `--port=N` when given), prints what it runs as and from, and destroys it.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import postgres from 'postgres';
import { exitOnEmbeddedPostgresError, startEmbeddedPostgres } from '../index.js';

const port = process.argv.find((arg) => arg.startsWith('--port='))?.slice('--port='.length);
const server = await startEmbeddedPostgres(port ? { port: Number(port) } : {}).catch((error: unknown) =>
  exitOnEmbeddedPostgresError(error, 'cli'),
);
const sql = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
const pid = row?.pid;
const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
console.log(
  JSON.stringify({ uid: process.getuid?.(), serverUid: Number(uid), exe: readlinkSync(`/proc/${pid}/exe`) }),
);
await sql.end();
await server.destroy();
