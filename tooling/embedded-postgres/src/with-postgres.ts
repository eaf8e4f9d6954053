/**
 * Runs a command with DATABASE_URL pointing at a new database on a throwaway embedded PostgreSQL, then stops the
 * server. CI uses it to run the README's `drizzle-kit migrate` line as written. With DATABASE_URL already set, the
 * new database is made on that server instead, and dropped afterwards.
 *
 *   pnpm with-postgres -- pnpm --filter @fstore/schema exec drizzle-kit migrate
 */
import { spawn } from 'node:child_process';
import postgres from 'postgres';
import { exitOnEmbeddedPostgresError } from './errors.js';
import { serverFromEnvironment, withDatabase } from './server.js';

const separator = process.argv.indexOf('--');
const command = separator >= 0 ? process.argv.slice(separator + 1) : process.argv.slice(2);
if (command.length === 0) {
  console.error('usage: with-postgres -- <command> [args...]');
  process.exit(2);
}

const server = await serverFromEnvironment().catch((error: unknown) =>
  exitOnEmbeddedPostgresError(error, 'with-postgres'),
);
const database = `fstore_${Date.now()}`;
const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
await admin.unsafe(`CREATE DATABASE "${database}"`).catch(async (error: Error) => {
  console.error(`with-postgres: no database can be created on ${server.description}: ${error.message}`);
  await server.stop();
  process.exit(1);
});
const url = withDatabase(server.adminUrl, database);
console.error(`with-postgres: ${server.description}, DATABASE_URL=${url}`);

const [program, ...args] = command as [string, ...string[]];
// `pnpm --filter … exec` runs this in tooling/embedded-postgres; the command runs where it was typed.
const cwd = process.env.INIT_CWD || process.cwd();
const child = spawn(program, args, { stdio: 'inherit', cwd, env: { ...process.env, DATABASE_URL: url } });
const code: number = await new Promise((resolve) => {
  child.on('error', (error) => {
    console.error(`with-postgres: cannot run ${program}: ${error.message}`);
    resolve(127);
  });
  child.on('exit', (status) => resolve(status ?? 1));
});
await admin.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`).catch(() => {});
await admin.end();
await server.stop();
process.exit(code);
