// Checks that the database at DATABASE_URL holds fstore's whole SQL API and that every migration of the journal
// is recorded in fstore's own migrations table. CI runs it after the README's `drizzle-kit migrate` line.
import { readFileSync } from 'node:fs';
import postgres from 'postgres';

const journal = JSON.parse(
  readFileSync(new URL('../migrations/meta/_journal.json', import.meta.url), 'utf8'),
);
// Every function the migrations leave in place, read from the migrations themselves, in order: created (or
// replaced), unless a later statement dropped it (0010 drops the append trigger's function).
const expected = [];
for (const entry of journal.entries) {
  const text = readFileSync(new URL(`../migrations/${entry.tag}.sql`, import.meta.url), 'utf8');
  for (const [, dropped, name] of text.matchAll(
    /(DROP FUNCTION (?:IF EXISTS )?|CREATE (?:OR REPLACE )?FUNCTION )(\w+)\(/g,
  )) {
    const at = expected.indexOf(name);
    if (dropped.startsWith('DROP')) {
      if (at >= 0) expected.splice(at, 1);
    } else if (at < 0) expected.push(name);
  }
}
const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
try {
  const functions = (
    await sql`SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace`
  ).map((row) => row.proname);
  const missing = expected.filter((name) => !functions.includes(name));
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM fstore.__fstore_migrations`;
  if (missing.length > 0 || n !== journal.entries.length) {
    console.error(
      `verify-install: missing functions [${missing.join(', ')}], ${n} of ${journal.entries.length} migrations recorded`,
    );
    process.exitCode = 1;
  } else {
    console.log(
      `verify-install: all ${expected.length} functions of the migrations present, ${n} migrations recorded in fstore.__fstore_migrations`,
    );
  }
} finally {
  await sql.end();
}
