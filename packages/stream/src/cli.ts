#!/usr/bin/env node
/**
 * fstore's command line. `fstore status` prints, for every view of the database at DATABASE_URL, how far behind it
 * is: streams, pending and leased streams, unread events, the age of the oldest unread event, parked events.
 */
import { createPostgresClient } from '@fstore/store/postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { viewStatus } from './functions.js';
import { formatStatusTable } from './status.js';

const usage = `usage: fstore status      (reads DATABASE_URL)

  status   how far behind each view is: streams, pending, leased and stopped streams,
           unread events, the age of the oldest unread event, parked events`;

async function main(argv: string[]): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(usage);
    return command === undefined ? 2 : 0;
  }
  if (command !== 'status') {
    console.error(`fstore: unknown command ${command}\n${usage}`);
    return 2;
  }
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('fstore status: set DATABASE_URL to the database to report on');
    return 2;
  }
  const sql = createPostgresClient(url, { max: 1, onnotice: () => {} });
  try {
    console.log(formatStatusTable(await viewStatus(drizzle(sql))));
    return 0;
  } catch (error) {
    console.error(`fstore status: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

process.exitCode = await main(process.argv.slice(2));
