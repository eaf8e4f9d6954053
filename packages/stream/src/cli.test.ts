/**
 * `fstore status` as a newcomer meets it: its help, a wrong command line, and a DATABASE_URL that does not lead to
 * fstore (nothing listening, a host that does not resolve, a wrong password, a missing database, a database without
 * fstore's migrations). Each failure is one line on stderr that names the problem and its fix: no stack, no password.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, freePort, withDatabase } from '@fstore/test-harness';
import {
  expectOneLine as expectLine,
  type ProcessRun,
  runTypeScript,
} from '@fstore/test-harness/cli-process';
import { afterAll, beforeAll, expect, test } from 'vitest';

const migrated = await createTestDatabase();
const empty = await createTestDatabase({ from: 'empty' });
// A login role of its own, whose password is unlike any word a message could hold.
const role = `fstore_cli_${randomBytes(4).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;
const as = (url: string, user: string, pass: string) => {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = pass;
  return parsed.toString();
};
beforeAll(() => migrated.sql.unsafe(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`));
afterAll(async () => {
  await migrated.sql.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  await Promise.all([migrated.drop(), empty.drop()]);
});

const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));

function fstore(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProcessRun> {
  return runTypeScript(cli, args, { ...process.env, DATABASE_URL: '', ...env });
}

const expectOneLine = (run: ProcessRun, code: number, pattern: RegExp, secrets: string[] = [password]) =>
  expectLine(run, code, pattern, secrets);

test('--help and -h print the usage and exit 0', async () => {
  const argvs = [['--help'], ['-h'], ['status', '--help'], ['status', '-h']];
  const runs = await Promise.all(argvs.map((args) => fstore(args)));
  for (const [index, run] of runs.entries()) {
    expect(run.code, argvs[index]?.join(' ')).toBe(0);
    expect(run.stdout).toMatch(/^usage: fstore status/);
    expect(run.stderr).toBe('');
  }
});

test('a wrong command line is one line with a pointer to the usage, exit 2', async () => {
  const [flag, command, extra, noUrl] = await Promise.all([
    fstore(['status', '--verbose']),
    fstore(['stats']),
    fstore(['status', 'now']),
    fstore(['status']),
  ]);
  expectOneLine(flag, 2, /^fstore status: unknown option --verbose \(see fstore --help\)$/m);
  expectOneLine(command, 2, /^fstore: unknown command stats \(see fstore --help\)$/m);
  expectOneLine(extra, 2, /^fstore status: unexpected argument now/m);
  expectOneLine(noUrl, 2, /^fstore status: set DATABASE_URL/m);
});

test('nothing listening at DATABASE_URL: connection refused, exit 1', async () => {
  const port = await freePort();
  const run = await fstore(['status'], {
    DATABASE_URL: `postgres://${role}:${password}@127.0.0.1:${port}/x`,
  });
  expectOneLine(
    run,
    1,
    new RegExp(
      `^fstore status: cannot connect to 127\\.0\\.0\\.1:${port} \\(connection refused\\): is PostgreSQL running, and is DATABASE_URL right\\?\n$`,
    ),
  );
});

test('a host that does not resolve: no such host, exit 1', async () => {
  const run = await fstore(['status'], {
    DATABASE_URL: `postgres://${role}:${password}@no-such-host.invalid:5432/x`,
  });
  expectOneLine(
    run,
    1,
    /^fstore status: cannot connect to no-such-host\.invalid:5432 \(no such host\): .*DATABASE_URL/,
  );
});

test('a wrong password: the server refused it (28P01), exit 1', async () => {
  const wrong = `wrong-${randomBytes(8).toString('hex')}`;
  const run = await fstore(['status'], { DATABASE_URL: as(migrated.url, role, wrong) });
  expectOneLine(
    run,
    1,
    new RegExp(
      `^fstore status: PostgreSQL at \\S+ refused the password of user ${role} \\(28P01\\): check the user and password in DATABASE_URL\n$`,
    ),
    [wrong, password],
  );
});

test('a database that does not exist (3D000), exit 1', async () => {
  const missing = `fstore_missing_${randomBytes(4).toString('hex')}`;
  const run = await fstore(['status'], {
    DATABASE_URL: as(withDatabase(migrated.url, missing), role, password),
  });
  expectOneLine(
    run,
    1,
    new RegExp(`^fstore status: database ${missing} does not exist on \\S+ \\(3D000\\): create it`),
  );
});

test('a database without fstore: checked up front, one line that says to run the migrations, exit 1', async () => {
  const run = await fstore(['status'], { DATABASE_URL: as(empty.url, role, password) });
  expectOneLine(
    run,
    1,
    new RegExp(
      `^fstore status: fstore is not installed in database ${empty.name}: run its migrations \\(drizzle-kit migrate with @fstore/schema's config, or migrate\\(\\) from @fstore/schema\\)\n$`,
    ),
  );
});

test('a role without the privileges fstore needs: permission denied (42501), exit 1', async () => {
  const run = await fstore(['status'], { DATABASE_URL: as(migrated.url, role, password) });
  expectOneLine(
    run,
    1,
    /^fstore status: permission denied for \S+ \S+ \(42501\): connect as a role that has fstore's privileges/,
  );
});

test('fstore dashboard: a wrong option or port is exit 2, an outside address without a token exit 1, one line each', async () => {
  const [option, port, outside] = await Promise.all([
    fstore(['dashboard', '--open']),
    fstore(['dashboard', '--port', 'web'], { DATABASE_URL: migrated.url }),
    fstore(['dashboard', '--host', '0.0.0.0', '--port', '0'], { DATABASE_URL: migrated.url }),
  ]);
  expectOneLine(option, 2, /^fstore dashboard: Unknown option '--open'/m);
  expectOneLine(port, 2, /^fstore dashboard: --port must be a port number, got web/m);
  expectOneLine(
    outside,
    1,
    /^fstore dashboard: the dashboard listens on 0\.0\.0\.0, beyond this machine: give it a token/m,
  );
});
