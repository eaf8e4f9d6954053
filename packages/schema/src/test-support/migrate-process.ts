// Runs fstore's migrate() in a process of its own against the database URL given as argument, and prints what it
// applied as JSON. migrate.test.ts starts two of these at once.
import postgres from 'postgres';
import { migrate } from '../migrate.js';

const url = process.argv[2];
if (!url) throw new Error('usage: migrate-process <database url>');
const sql = postgres(url, { max: 1, onnotice: () => {} });
try {
  const result = await migrate(sql);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await sql.end();
}
