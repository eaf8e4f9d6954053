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
//      the folder creates nothing;
//   5. security lives in the migrations: from 0007_security_in_migrations on, every function a migration creates
//      or replaces is one of the SQL API's lists in sql/least-privilege.sql (v_read, v_write, v_internal) and
//      declares `SET search_path = pg_catalog, public, pg_temp`; those of v_write declare SECURITY DEFINER and have
//      EXECUTE revoked from PUBLIC in the same migration, the others do not declare SECURITY DEFINER; no ALTER
//      FUNCTION takes either away. (CREATE OR REPLACE resets both to the defaults when they are left out.)
//   6. sql/schema.sql, the dump of the schema the migrations build, is up to date: src/schema-dump.test.ts migrates
//      a fresh database on a real PostgreSQL (embedded, or DATABASE_URL's server) and compares.
// The repository is never written to, except by `--write-schema`, which regenerates sql/schema.sql (and runs the
// other checks too). `--only=journal,sql,security` runs only the checks named. Prints one line per passed check;
// exits 1 with every failure otherwise.
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
function drizzleKit(workDir, args) {
  const drizzleKitBin = join(dirname(createRequire(import.meta.url).resolve('drizzle-kit')), 'bin.cjs');
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

// 5. Security in the migrations.
const securityFrom = '0007_security_in_migrations';
const leastPrivilegeFile = join(packageDir, 'sql', 'least-privilege.sql');
const pinnedPath =
  /\bSET\s+search_path\s*(?:=|\bTO\b)\s*'?pg_catalog'?\s*,\s*'?public'?\s*,\s*'?pg_temp'?(?![\w'])/i;

/** The script's lists (`v_read CONSTANT text[] := ARRAY [...]`): which function is which. */
function apiLists() {
  const text = readFileSync(leastPrivilegeFile, 'utf8');
  const lists = {};
  for (const name of ['v_read', 'v_write', 'v_internal']) {
    const match = new RegExp(`\\b${name}\\s+CONSTANT\\s+text\\[\\]\\s*:=\\s*ARRAY\\s*\\[([^\\]]*)\\]`).exec(
      text,
    );
    if (!match) throw new Error(`${show(leastPrivilegeFile)} has no list ${name}`);
    lists[name] = new Set([...match[1].matchAll(/'([^']+)'/g)].map((m) => m[1]));
  }
  return lists;
}

/** A chunk as PostgreSQL would read its clauses: comments removed, dollar-quoted bodies replaced by `$$`. */
function clausesOf(chunk) {
  let out = '';
  let i = 0;
  const isIdentifierChar = (char) => char !== undefined && /[A-Za-z0-9_$]/.test(char);
  while (i < chunk.length) {
    const char = chunk[i];
    if (char === '-' && chunk[i + 1] === '-') {
      const end = chunk.indexOf('\n', i);
      i = end === -1 ? chunk.length : end + 1;
      out += '\n';
    } else if (char === '/' && chunk[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < chunk.length && depth > 0) {
        if (chunk.startsWith('/*', i)) depth++;
        else if (chunk.startsWith('*/', i)) depth--;
        i += chunk.startsWith('/*', i) || chunk.startsWith('*/', i) ? 2 : 1;
      }
      out += ' ';
    } else if (char === "'") {
      const start = i++;
      while (i < chunk.length && !(chunk[i] === "'" && chunk[i + 1] !== "'")) i += chunk[i] === "'" ? 2 : 1;
      i++;
      out += chunk.slice(start, i);
    } else if (char === '$' && !isIdentifierChar(chunk[i - 1])) {
      const opening = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(chunk.slice(i, i + 64));
      if (!opening) {
        out += char;
        i++;
        continue;
      }
      const end = chunk.indexOf(opening[0], i + opening[0].length);
      i = end === -1 ? chunk.length : end + opening[0].length;
      out += ' $$ ';
    } else {
      out += char;
      i++;
    }
  }
  return out;
}

function checkSecurity() {
  const check = 'security';
  const before = failures.length;
  let lists;
  try {
    lists = apiLists();
  } catch (error) {
    fail(check, error.message);
    return;
  }
  const files = sqlFiles().filter((file) => file >= `${securityFrom}.sql`);
  if (files.length === 0) fail(check, `no migration ${securityFrom}.sql`);
  let functions = 0;
  for (const file of files) {
    const statements = readFileSync(join(migrationsDir, file), 'utf8').split(breakpoint).map(clausesOf);
    const revokedFromPublic = (name) =>
      statements.some(
        (s) =>
          /^\s*REVOKE\b/i.test(s) &&
          /\bFROM\s+PUBLIC\b/i.test(s) &&
          new RegExp(`(^|[\\s,."])${name}"?\\s*\\(`, 'i').test(s),
      );
    for (const statement of statements) {
      const created = /\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:"?public"?\.)?"?(\w+)"?\s*\(/i.exec(
        statement,
      );
      const altered = /\bALTER\s+FUNCTION\s+(?:"?public"?\.)?"?(\w+)"?\s*\(/i.exec(statement);
      if (created) {
        functions++;
        const name = created[1].toLowerCase();
        const where = `${file}: function ${name}`;
        const isWrite = lists.v_write.has(name);
        if (!isWrite && !lists.v_read.has(name) && !lists.v_internal.has(name)) {
          fail(
            check,
            `${where} is in none of the lists of ${show(leastPrivilegeFile)} (v_read: reads only, SECURITY INVOKER; ` +
              `v_write: writes, SECURITY DEFINER; v_internal: triggers and helpers): add it to the one it belongs to`,
          );
          continue;
        }
        if (!pinnedPath.test(statement)) {
          fail(
            check,
            `${where} does not declare SET search_path = pg_catalog, public, pg_temp: CREATE OR REPLACE would reset it, ` +
              "and a caller's search_path could then stand in for fstore's tables, functions and operators",
          );
        }
        const definer = /\bSECURITY\s+DEFINER\b/i.test(statement);
        if (isWrite && !definer) {
          fail(
            check,
            `${where} writes (v_write) but does not declare SECURITY DEFINER: CREATE OR REPLACE would reset it, and ` +
              'an application role without write privileges on the tables could no longer call it',
          );
        }
        if (!isWrite && definer) {
          fail(
            check,
            `${where} is not in v_write but declares SECURITY DEFINER: only the writing functions run as their owner`,
          );
        }
        if (isWrite && !revokedFromPublic(name)) {
          fail(
            check,
            `${where} is SECURITY DEFINER, but ${file} does not REVOKE EXECUTE ON FUNCTION ${name}(…) FROM PUBLIC: ` +
              "PostgreSQL lets everyone execute a new function, and this one runs with its owner's rights",
          );
        }
      } else if (altered) {
        const name = altered[1].toLowerCase();
        const where = `${file}: ALTER FUNCTION ${name}`;
        if (
          /\bRESET\s+(?:search_path|ALL)\b/i.test(statement) ||
          (/\bSET\s+search_path\b/i.test(statement) && !pinnedPath.test(statement))
        ) {
          fail(check, `${where} changes the fixed search_path (pg_catalog, public, pg_temp)`);
        }
        if (lists.v_write.has(name) && /\bSECURITY\s+INVOKER\b/i.test(statement)) {
          fail(check, `${where} makes a writing function (v_write) SECURITY INVOKER`);
        }
        if (!lists.v_write.has(name) && /\bSECURITY\s+DEFINER\b/i.test(statement)) {
          fail(check, `${where} makes a function that is not in v_write SECURITY DEFINER`);
        }
      }
    }
  }
  if (failures.length === before) {
    pass(
      `security: the ${functions} functions that ${files.length} migrations from ${securityFrom} on create declare the fixed search_path, ` +
        'SECURITY DEFINER exactly for those that write (EXECUTE revoked from PUBLIC), as the lists of sql/least-privilege.sql say',
    );
  }
}

// 6. The schema dump, regenerated on a real PostgreSQL by a vitest test (the tests' harness starts the server).
const writeSchema = process.argv.includes('--write-schema');
const schemaDumpTest = 'src/schema-dump.test.ts';

function checkSchemaDump() {
  const check = 'schema dump';
  const vitest = join(dirname(createRequire(import.meta.url).resolve('vitest/package.json')), 'vitest.mjs');
  const result = spawnSync(process.execPath, [vitest, 'run', schemaDumpTest], {
    cwd: packageDir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
    env: { ...process.env, FORCE_COLOR: '0', FSTORE_SCHEMA_DUMP: writeSchema ? 'write' : 'check' },
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
  if (result.status === 0 && !result.error) {
    pass(
      writeSchema
        ? 'schema dump: sql/schema.sql regenerated from a freshly migrated database'
        : 'schema dump: sql/schema.sql matches a freshly migrated database',
    );
  } else {
    fail(
      check,
      `sql/schema.sql does not match what the migrations build (or ${schemaDumpTest} could not run: ` +
        `${result.error?.message ?? `exit ${result.status}`}). If the migrations changed, regenerate it with ` +
        `"pnpm check:migrations --write-schema" and commit it.\n${output.split('\n').slice(-60).join('\n')}`,
    );
  }
}

if (!existsSync(migrationsDir)) {
  console.error(`check-migrations: no folder ${migrationsDir}`);
  process.exit(1);
}
console.log(`Checking ${show(migrationsDir)}`);
// `--only=journal,security` runs those checks alone (src/check-migrations.test.ts runs the fast ones on a copy).
const checks = {
  journal: checkJournal,
  sql: checkSqlFiles,
  'drizzle-kit': checkDrizzleKit,
  security: checkSecurity,
  'schema-dump': checkSchemaDump,
};
const only = process.argv
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const unknownChecks = (only ?? []).filter((name) => !(name in checks));
if (unknownChecks.length > 0) {
  console.error(
    `check-migrations: no check ${unknownChecks.join(', ')}; choose from ${Object.keys(checks).join(', ')}`,
  );
  process.exit(2);
}
for (const [name, run] of Object.entries(checks)) if (!only || only.includes(name)) run();
if (failures.length > 0) {
  console.error(`\ncheck-migrations: ${failures.length} problem(s):`);
  for (const failure of failures) console.error(`\n✗ ${failure}`);
  process.exit(1);
}
