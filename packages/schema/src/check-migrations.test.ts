/**
 * `pnpm check:migrations` refuses a migration that would take a function's security away: run on a copy of the
 * migrations folder with one synthetic migration more. A replacement copied from sql/schema.sql (pg_get_functiondef's
 * text, which carries SECURITY DEFINER and the fixed search_path) passes; the same replacement without them, or a
 * function the lists of sql/least-privilege.sql do not know, does not.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const schema = readFileSync(join(packageDir, 'sql', 'schema.sql'), 'utf8');
const breakpoint = '\n--> statement-breakpoint\n';

/** A function's current definition, as sql/schema.sql shows it. */
function definitionOf(signature: string): string {
  const start = schema.indexOf(`-- ${signature}:`);
  if (start === -1) throw new Error(`sql/schema.sql has no ${signature}`);
  const from = schema.indexOf('CREATE OR REPLACE FUNCTION', start);
  const end = schema.indexOf('$function$;', from);
  return schema.slice(from, end + '$function$;'.length);
}

const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

/** Runs the fast checks on a copy of the package's migrations with `sql` as one more migration. */
function checkWith(sql: string) {
  const folder = mkdtempSync(join(tmpdir(), 'fstore-check-migrations-test-'));
  folders.push(folder);
  for (const part of ['scripts', 'migrations', 'sql']) {
    mkdirSync(join(folder, part));
    cpSync(join(packageDir, part), join(folder, part), { recursive: true });
  }
  const journalFile = join(folder, 'migrations', 'meta', '_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8')) as {
    entries: { idx: number; when: number; tag: string; version: string; breakpoints: boolean }[];
  };
  const last = journal.entries.at(-1) as (typeof journal.entries)[number];
  const tag = `${String(last.idx + 1).padStart(4, '0')}_synthetic`;
  journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1000, tag });
  writeFileSync(journalFile, JSON.stringify(journal, null, 2));
  writeFileSync(join(folder, 'migrations', `${tag}.sql`), `-- Custom SQL migration: a test.\n${sql}\n`);
  const result = spawnSync(
    process.execPath,
    [join(folder, 'scripts', 'check-migrations.mjs'), '--only=journal,sql,security'],
    { cwd: folder, encoding: 'utf8' },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const appendEvents = definitionOf(
  'append_events(v_decider text, v_decider_id text, v_previous_id uuid, v_command_id uuid, v_events jsonb)',
);
const revokeAppendEvents =
  'REVOKE EXECUTE ON FUNCTION append_events(text, text, uuid, uuid, jsonb) FROM PUBLIC;';

/** What the security check counts: the functions created, and the migrations read, from 0007 on. */
function securityCounts(output: string) {
  const match = /ok {2}security: the (\d+) functions that (\d+) migrations/.exec(output);
  if (!match) throw new Error(`no security line in:\n${output}`);
  return { functions: Number(match[1]), migrations: Number(match[2]) };
}

describe('pnpm check:migrations, security', () => {
  test('passes a replacement copied from sql/schema.sql, with EXECUTE revoked from PUBLIC', () => {
    expect(appendEvents).toMatch(/SECURITY DEFINER\n SET search_path TO 'pg_catalog', 'public', 'pg_temp'/);
    // The package's own migrations, with a synthetic one that creates nothing: what the check counts without it.
    const baseline = checkWith('SELECT 1;');
    expect(baseline.status, baseline.output).toBe(0);
    const { status, output } = checkWith(`${appendEvents}${breakpoint}${revokeAppendEvents}`);
    expect(status, output).toBe(0);
    // Every migration from 0007 on is read (0007 to 0011 and the synthetic one), with the functions 0008 and 0010
    // create (six, and ten with advance_view, log_head, log_horizon and the subscription overloads); the
    // replacement is one function more.
    const before = securityCounts(baseline.output);
    expect(before.migrations).toBeGreaterThanOrEqual(6);
    expect(before.functions).toBeGreaterThanOrEqual(16);
    expect(securityCounts(output)).toEqual({
      functions: before.functions + 1,
      migrations: before.migrations,
    });
  });

  test('refuses the same replacement without SECURITY DEFINER and the fixed search_path', () => {
    const bare = appendEvents.replace(' SECURITY DEFINER\n', '').replace(/ SET search_path TO [^\n]*\n/, '');
    const { status, output } = checkWith(`${bare}${breakpoint}${revokeAppendEvents}`);
    expect(status).toBe(1);
    expect(output).toMatch(
      /function append_events does not declare SET search_path = pg_catalog, public, pg_temp/,
    );
    expect(output).toMatch(/function append_events writes \(v_write\) but does not declare SECURITY DEFINER/);
  });

  test('refuses a writing function whose EXECUTE is not revoked from PUBLIC in the same migration', () => {
    const { status, output } = checkWith(appendEvents);
    expect(status).toBe(1);
    expect(output).toMatch(/append_events is SECURITY DEFINER, but \S+ does not REVOKE EXECUTE/);
  });

  test('refuses a read function declared SECURITY DEFINER', () => {
    const getEvents = definitionOf('get_events(v_decider_id text)').replace(
      ' STABLE\n',
      ' STABLE SECURITY DEFINER\n',
    );
    const { status, output } = checkWith(getEvents);
    expect(status).toBe(1);
    expect(output).toMatch(/function get_events is not in v_write but declares SECURITY DEFINER/);
  });

  test('checks the functions 0010 adds: advance_view copied from sql/schema.sql passes with its REVOKE and fails without SECURITY DEFINER; log_head fails with it', () => {
    const advanceView = definitionOf('advance_view(v_view text, v_max_events integer)');
    const revokeAdvanceView = 'REVOKE EXECUTE ON FUNCTION advance_view(text, int) FROM PUBLIC;';
    const copied = checkWith(`${advanceView}${breakpoint}${revokeAdvanceView}`);
    expect(copied.status, copied.output).toBe(0);
    const bare = checkWith(
      `${advanceView.replace(' SECURITY DEFINER\n', '')}${breakpoint}${revokeAdvanceView}`,
    );
    expect(bare.status).toBe(1);
    expect(bare.output).toMatch(
      /function advance_view writes \(v_write\) but does not declare SECURITY DEFINER/,
    );
    const logHead = definitionOf('log_head()').replace(
      ' LANGUAGE plpgsql\n',
      ' LANGUAGE plpgsql\n SECURITY DEFINER\n',
    );
    const definer = checkWith(logHead);
    expect(definer.status).toBe(1);
    expect(definer.output).toMatch(/function log_head is not in v_write but declares SECURITY DEFINER/);
  });

  test('refuses a function in none of the lists of sql/least-privilege.sql', () => {
    const { status, output } = checkWith(
      `CREATE FUNCTION purge_stream(v_decider_id text) RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS $purge$ SELECT 1 $purge$;`,
    );
    expect(status).toBe(1);
    expect(output).toMatch(/function purge_stream is in none of the lists/);
  });

  test('refuses an ALTER FUNCTION that resets the search_path or drops SECURITY DEFINER', () => {
    const { status, output } = checkWith(
      `ALTER FUNCTION get_events(text) RESET search_path;${breakpoint}ALTER FUNCTION append_event(text, uuid, text, text, jsonb, uuid, uuid, bigint) SECURITY INVOKER;`,
    );
    expect(status).toBe(1);
    expect(output).toMatch(/ALTER FUNCTION get_events changes the fixed search_path/);
    expect(output).toMatch(
      /ALTER FUNCTION append_event makes a writing function \(v_write\) SECURITY INVOKER/,
    );
  });
});
