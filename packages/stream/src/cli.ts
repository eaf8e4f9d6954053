#!/usr/bin/env node
/**
 * fstore's command line. `fstore status` prints, for every view of the database at DATABASE_URL, how far behind it
 * is: streams, pending and leased streams, unread events, the age of the oldest unread event, parked events.
 */
import { parseArgs } from 'node:util';
import { createPostgresClient } from '@fstore/store/postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { checkInstalled, reportFailure, UsageError } from './error-line.js';
import { viewStatus } from './functions.js';
import { formatStatusTable } from './status.js';

const usage = `usage: fstore status      (reads DATABASE_URL)
       fstore --help

  status   how far behind each view is: streams, pending, leased and stopped streams,
           unread events, the age of the oldest unread event, parked events`;

/** Exit codes: 0 done, 1 it failed (one line on stderr says why), 2 the command line is wrong. */
async function main(argv: string[]): Promise<number> {
  const { tokens } = parseArgs({ args: argv, strict: false, allowPositionals: true, tokens: true });
  const positionals = tokens.flatMap((token) => (token.kind === 'positional' ? [token.value] : []));
  for (const token of tokens) {
    if (token.kind === 'option' && token.name !== 'help' && token.name !== 'h') {
      throw new UsageError(`unknown option ${token.rawName}`);
    }
  }
  const [command, ...rest] = positionals;
  if (tokens.some((token) => token.kind === 'option') || command === 'help') {
    console.log(usage);
    return 0;
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

const argv = process.argv.slice(2);
process.exitCode = await main(argv).catch((error: unknown) =>
  reportFailure(argv.includes('status') ? 'fstore status' : 'fstore', error, {
    url: process.env.DATABASE_URL,
    help: 'fstore --help',
  }),
);
