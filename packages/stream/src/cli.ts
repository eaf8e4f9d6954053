#!/usr/bin/env node
/**
 * fstore's command line, against the database at DATABASE_URL. `fstore status` prints how far behind each view is;
 * `fstore dashboard` serves the same, live, with parked events, as a web page.
 */
import { parseArgs } from 'node:util';
import { createPostgresClient } from '@fstore/store/postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { startDashboard } from './dashboard/server.js';
import { checkInstalled, reportFailure, UsageError } from './error-line.js';
import { viewStatus } from './functions.js';
import { formatStatusTable } from './status.js';

const usage = `usage: fstore status      (reads DATABASE_URL)
       fstore dashboard [--host 127.0.0.1] [--port 4100] [--token T] [--actions]
       fstore --help

  status      how far behind each view is: streams, pending, leased and stopped streams,
              unread events, the age of the oldest unread event, parked events
  dashboard   the same, live, in a browser, with the parked events and the log's size.
              Read-only and on 127.0.0.1 unless told otherwise:
                --host H    listen on H (any address but loopback needs a token)
                --port P    default 4100 (0: any free port)
                --token T   every request must carry T (or FSTORE_DASHBOARD_TOKEN)
                --actions   allow retrying and discarding parked events`;

const dashboardOptions = {
  host: { type: 'string' },
  port: { type: 'string' },
  token: { type: 'string' },
  actions: { type: 'boolean' },
} as const;

/** Exit codes: 0 done, 1 it failed (one line on stderr says why), 2 the command line is wrong. */
async function main(argv: string[]): Promise<number> {
  const { tokens } = parseArgs({ args: argv, strict: false, allowPositionals: true, tokens: true });
  const positionals = tokens.flatMap((token) => (token.kind === 'positional' ? [token.value] : []));
  const [command, ...rest] = positionals;
  const help = tokens.some(
    (token) => token.kind === 'option' && (token.name === 'help' || token.name === 'h'),
  );
  if (help || command === 'help') {
    console.log(usage);
    return 0;
  }
  if (command === 'dashboard') return dashboard(argv.filter((arg) => arg !== 'dashboard'));
  for (const token of tokens) {
    if (token.kind === 'option') throw new UsageError(`unknown option ${token.rawName}`);
  }
  if (command === undefined) {
    console.error(usage);
    return 2;
  }
  if (command !== 'status') throw new UsageError(`unknown command ${command}`);
  if (rest.length > 0) throw new UsageError(`unexpected argument ${rest[0]}`);
  const url = process.env.DATABASE_URL;
  if (!url) throw new UsageError('set DATABASE_URL to the database to report on');
  const sql = createPostgresClient(url, { max: 1, onnotice: () => {} });
  try {
    const db = drizzle(sql);
    await checkInstalled(db, ['view_status()']);
    console.log(formatStatusTable(await viewStatus(db)));
    return 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Serves the dashboard until SIGINT or SIGTERM. */
async function dashboard(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof dashboardOptions }>>;
  try {
    parsed = parseArgs({ args: argv, options: dashboardOptions, allowPositionals: false });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message.split('\n')[0] : String(error));
  }
  const { values } = parsed;
  const port = values.port === undefined ? 4100 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be a port number, got ${values.port}`);
  const url = process.env.DATABASE_URL;
  if (!url) throw new UsageError('set DATABASE_URL to the database to show');
  const sql = createPostgresClient(url, { max: 4, onnotice: () => {} });
  const db = drizzle(sql);
  try {
    await checkInstalled(db, ['view_lag()', 'view_status()', 'list_parked_events(text)']);
    const token = values.token ?? process.env.FSTORE_DASHBOARD_TOKEN;
    const served = await startDashboard({
      db,
      ...(values.host ? { host: values.host } : {}),
      port,
      ...(token ? { token } : {}),
      actions: values.actions === true,
    });
    console.log(`fstore dashboard: ${served.url}${values.actions ? ' (actions on)' : ' (read-only)'}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await served.close();
    return 0;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

const argv = process.argv.slice(2);
const command = argv.includes('dashboard')
  ? 'fstore dashboard'
  : argv.includes('status')
    ? 'fstore status'
    : 'fstore';
process.exitCode = await main(argv).catch((error: unknown) =>
  reportFailure(command, error, {
    url: process.env.DATABASE_URL,
    help: 'fstore --help',
  }),
);
