#!/usr/bin/env node
// Checks fstore's migrations folder before it ships (`pnpm --filter @fstore/schema run check:migrations`):
//   1. the journal: `when` strictly increases (drizzle's migrator skips a migration older than the newest applied
//      one and still reports success), every entry has its .sql file and every .sql file is in the journal;
//   2. the SQL files: no `--> statement-breakpoint` inside a dollar-quoted body, a string or a block comment (the
//      migrator splits on the marker with a plain string split), no unterminated dollar quote, and no first line
//      that is a comment holding SQL (`drizzle-kit generate --custom` leaves a comment line without a newline, so
//      SQL appended to it is silently commented out);
//   3. `drizzle-kit check` passes;
//   4. the Drizzle schema (src/tables.ts) and the migrations agree: `drizzle-kit generate` into a temporary copy of
//      the folder creates nothing.
// The repository is never written to. Prints one line per passed check; exits 1 with every failure otherwise.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const migrationsDir = join(packageDir, 'migrations');
const schemaFile = join(packageDir, 'src', 'tables.ts');
const breakpoint = '--> statement-breakpoint';

const failures = [];
const fail = (check, message) => failures.push(`${check}: ${message}`);
const pass = (message) => console.log(`ok  ${message}`);
const show = (path) => relative(process.cwd(), path) || path;

function sqlFiles() {
  return readdirSync(migrationsDir)
    .filter((name) => name.endsWith('.sql'))
    .sort();
}

// 1. The journal.
function checkJournal() {
  const check = 'journal';
  const journalFile = join(migrationsDir, 'meta', '_journal.json');
  let journal;
  try {
    journal = JSON.parse(readFileSync(journalFile, 'utf8'));
  } catch (error) {
    fail(check, `cannot read ${show(journalFile)}: ${error.message}`);
    return;
  }
  const entries = Array.isArray(journal.entries) ? journal.entries : [];
  const before = failures.length;
  if (entries.length === 0) fail(check, `${show(journalFile)} has no entries`);
  entries.forEach((entry, index) => {
    if (entry.idx !== index)
      fail(check, `entry ${index} (${entry.tag}) has idx ${entry.idx}, expected ${index}`);
    if (!Number.isInteger(entry.when)) fail(check, `entry ${entry.tag} has no integer "when"`);
    const previous = entries[index - 1];
    if (previous && !(entry.when > previous.when)) {
      fail(
        check,
        `"when" must strictly increase: ${entry.tag} (${entry.when}) is not after ${previous.tag} (${previous.when}); ` +
          `drizzle's migrator would skip ${entry.tag} on databases that already have ${previous.tag}`,
      );
    }
  });
  const files = new Set(sqlFiles());
  const tags = new Set(entries.map((entry) => `${entry.tag}.sql`));
  for (const file of tags) {
    if (!files.has(file)) fail(check, `journal entry ${file.slice(0, -4)} has no file ${file}`);
  }
  for (const file of files) {
    if (!tags.has(file)) fail(check, `${file} is not in the journal (drizzle's migrator would never run it)`);
  }
  if (failures.length === before) {
    pass(
      `journal: ${entries.length} entries, "when" strictly increases, every entry has its .sql file and every .sql file is journaled`,
    );
  }
}

// 2. The SQL files, read the way PostgreSQL reads them: only outside strings, comments and dollar quotes is a
// breakpoint marker a safe place to split.
function scanSql(text) {
  const problems = [];
  const lineAt = (offset) => text.slice(0, offset).split('\n').length;
  const isIdentifierChar = (char) => char !== undefined && /[A-Za-z0-9_$]/.test(char);
  let i = 0;
  while (i < text.length) {
    const char = text[i];
    const next = text[i + 1];
    if (char === '-' && next === '-') {
      // A line comment (the breakpoint marker itself is one).
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end + 1;
    } else if (char === '/' && next === '*') {
      // A block comment; PostgreSQL nests them.
      const start = i;
      let depth = 1;
      i += 2;
      while (i < text.length && depth > 0) {
        if (text.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (text.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else i++;
      }
      inside(start, i, 'a block comment', depth > 0);
    } else if (char === "'") {
      // A string: '' escapes a quote; E'...' strings also escape with a backslash.
      const start = i;
      const backslashes = /[eE]/.test(text[i - 1] ?? '') && !isIdentifierChar(text[i - 2]);
      i++;
      let closed = false;
      while (i < text.length) {
        if (backslashes && text[i] === '\\') i += 2;
        else if (text[i] === "'" && text[i + 1] === "'") i += 2;
        else if (text[i] === "'") {
          i++;
          closed = true;
          break;
        } else i++;
      }
      inside(start, i, 'a string literal', !closed);
    } else if (char === '"') {
      const end = text.indexOf('"', i + 1);
      i = end === -1 ? text.length : end + 1;
    } else if (char === '$' && !isIdentifierChar(text[i - 1])) {
      // A dollar quote opens with $$ or $name$ (name not starting with a digit: $1 is a parameter).
      const opening = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 64));
      if (!opening) {
        i++;
        continue;
      }
      const tag = opening[0];
      const start = i;
      const end = text.indexOf(tag, i + tag.length);
      i = end === -1 ? text.length : end + tag.length;
      inside(start, i, `the dollar-quoted body ${tag}`, end === -1);
    } else i++;
  }
  return problems;

  function inside(start, end, what, unterminated) {
    if (unterminated) {
      problems.push(`${what} opened on line ${lineAt(start)} is never closed`);
      return;
    }
    const body = text.slice(start, end);
    let at = body.indexOf(breakpoint);
    while (at !== -1) {
      problems.push(
        `"${breakpoint}" on line ${lineAt(start + at)} is inside ${what} opened on line ${lineAt(start)}: ` +
          `the migrator splits there and sends a broken statement`,
      );
      at = body.indexOf(breakpoint, at + 1);
    }
  }
}

// SQL that starts a statement, in upper case as the migrations write it: on a comment line, it was swallowed.
const statementStart =
  /\b(CREATE|ALTER|DROP|INSERT INTO|UPDATE|DELETE FROM|GRANT|REVOKE|COMMENT ON|TRUNCATE)\s/;

function checkSqlFiles() {
  const check = 'sql';
  const before = failures.length;
  const files = sqlFiles();
  for (const file of files) {
    const text = readFileSync(join(migrationsDir, file), 'utf8');
    for (const problem of scanSql(text)) fail(check, `${file}: ${problem}`);
    const firstLine = text.split('\n', 1)[0];
    if (firstLine.trimStart().startsWith('--') && statementStart.test(firstLine)) {
      fail(
        check,
        `${file}: its first line is a comment that holds SQL, which never runs (SQL appended to the comment that ` +
          `"drizzle-kit generate --custom" writes without a newline): ${JSON.stringify(firstLine.slice(0, 120))}`,
      );
    }
  }
  if (failures.length === before) {
    pass(
      `sql: ${files.length} files, no "${breakpoint}" inside a dollar quote, string or comment, no comment line swallowing SQL on line 1`,
    );
  }
}

// 3 and 4 run drizzle-kit on a temporary copy of the folder, so that nothing in the repository changes.
const drizzleKitBin = join(dirname(createRequire(import.meta.url).resolve('drizzle-kit')), 'bin.cjs');

function drizzleKit(workDir, args) {
  const result = spawnSync(process.execPath, [drizzleKitBin, ...args, '--config', 'drizzle.config.mjs'], {
    cwd: workDir,
    encoding: 'utf8',
    // No terminal: a schema change that drizzle-kit would ask about (a rename?) must not wait for an answer.
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  return { status: result.status, error: result.error, output };
}

function copyFolder() {
  const workDir = mkdtempSync(join(tmpdir(), 'fstore-check-migrations-'));
  cpSync(migrationsDir, join(workDir, 'migrations'), { recursive: true });
  // `out` is resolved against the working directory (an absolute path gets "./" put in front of it), so drizzle-kit
  // runs in the temporary folder; `schema` is the real one.
  writeFileSync(
    join(workDir, 'drizzle.config.mjs'),
    `export default ${JSON.stringify(
      { dialect: 'postgresql', schema: schemaFile, out: './migrations' },
      null,
      2,
    )};\n`,
  );
  return workDir;
}

function checkDrizzleKit() {
  const workDir = copyFolder();
  try {
    const check = drizzleKit(workDir, ['check']);
    if (check.status === 0 && !check.error) pass('drizzle-kit check: the snapshots agree');
    else
      fail(
        'drizzle-kit check',
        `failed (${check.error?.message ?? `exit ${check.status}`}):\n${check.output}`,
      );

    const filesBefore = new Set(readdirSync(join(workDir, 'migrations')));
    const generate = drizzleKit(workDir, ['generate']);
    const created = readdirSync(join(workDir, 'migrations')).filter((name) => !filesBefore.has(name));
    if (created.length > 0) {
      const sql = created
        .filter((name) => name.endsWith('.sql'))
        .map((name) => `--- ${name}\n${readFileSync(join(workDir, 'migrations', name), 'utf8').trim()}`)
        .join('\n');
      fail(
        'drift',
        `src/tables.ts and the migrations disagree: drizzle-kit generate would create ${created.join(', ')}. ` +
          `Run "pnpm --filter @fstore/schema run generate" and commit the result.\n${sql}`,
      );
    } else if (generate.status !== 0 || generate.error || !/No schema changes/.test(generate.output)) {
      // drizzle-kit generate exits 0 even when it fails (an unreadable folder, a question it cannot ask without a
      // terminal): trust only its own "no changes".
      const hint = /TTY/.test(generate.output)
        ? ' It wants to ask about the change (a rename?): run "pnpm --filter @fstore/schema run generate" in a terminal.'
        : '';
      fail(
        'drift',
        `drizzle-kit generate did not confirm "No schema changes" (${generate.error?.message ?? `exit ${generate.status}`}).${hint}\n${generate.output}`,
      );
    } else {
      pass('drift: drizzle-kit generate finds no schema changes against src/tables.ts');
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

if (!existsSync(migrationsDir)) {
  console.error(`check-migrations: no folder ${migrationsDir}`);
  process.exit(1);
}
console.log(`Checking ${show(migrationsDir)}`);
checkJournal();
checkSqlFiles();
checkDrizzleKit();
if (failures.length > 0) {
  console.error(`\ncheck-migrations: ${failures.length} problem(s):`);
  for (const failure of failures) console.error(`\n✗ ${failure}`);
  process.exit(1);
}
