/**
 * The demo's programs (`pnpm demo`, the decider and the projector) as a newcomer meets them: their help, a wrong
 * command line, a DATABASE_URL that leads nowhere (nothing listening, a wrong password, a missing database), and an
 * embedded PostgreSQL that cannot start. Each failure is one line on stderr that names the problem and its fix: no
 * stack, no password. (A database without fstore is no failure here: these programs run its migrations.)
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

const database = await createTestDatabase({ from: 'empty' });
// A login role of its own, whose password is unlike any word a message could hold.
const role = `fstore_demo_cli_${randomBytes(4).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;
const as = (url: string, user: string, pass: string) => {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = pass;
  return parsed.toString();
};
beforeAll(() => database.sql.unsafe(`CREATE ROLE "${role}" LOGIN PASSWORD '${password}'`));
afterAll(async () => {
  await database.sql.unsafe(`DROP ROLE IF EXISTS "${role}"`);
  await database.drop();
});

const programs = {
  demo: './main.ts',
  decider: './decider-cli.ts',
  projector: './projector-cli.ts',
} as const;
type Program = keyof typeof programs;

/** Runs a program with DATABASE_URL (none when undefined), as `pnpm demo` runs it. */
function run(program: Program, args: string[], url: string | undefined, env: NodeJS.ProcessEnv = {}) {
  const { DATABASE_URL: _, ...inherited } = process.env;
  return runTypeScript(fileURLToPath(new URL(programs[program], import.meta.url)), args, {
    ...inherited,
    ...(url === undefined ? {} : { DATABASE_URL: url }),
    ...env,
  });
}

const expectOneLine = (result: ProcessRun, code: number, pattern: RegExp, secrets: string[] = [password]) =>
  expectLine(result, code, pattern, secrets);

test('--help and -h print the usage and exit 0', async () => {
  const runs = await Promise.all([
    run('demo', ['--', '--help'], undefined),
    run('demo', ['-h'], undefined),
    run('decider', ['--help'], undefined),
    run('projector', ['-h'], undefined),
  ]);
  for (const result of runs) {
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^usage: pnpm /);
    expect(result.stderr).toBe('');
  }
});

test('a wrong command line is one line with a pointer to the usage, exit 2', async () => {
  const [demo, orders, decider, projector, noUrl] = await Promise.all([
    run('demo', ['--', '--bogus'], undefined),
    run('demo', ['--orders', 'many'], undefined),
    run('decider', ['--nope'], undefined),
    run('projector', ['--workers', '0'], undefined),
    run('projector', [], undefined),
  ]);
  expectOneLine(demo, 2, /^demo: Unknown option '--bogus' \(see pnpm demo --help\)\n$/);
  expectOneLine(
    orders,
    2,
    /^demo: --orders takes a whole number of 1 or more, got "many" \(see pnpm demo --help\)/,
  );
  expectOneLine(
    decider,
    2,
    /^decider: Unknown option '--nope' \(see pnpm --filter @fstore\/demo decider --help\)/,
  );
  expectOneLine(projector, 2, /^projector: --workers takes a whole number of 1 or more, got "0"/);
  expectOneLine(noUrl, 2, /^projector: set DATABASE_URL/);
});

test('nothing listening at DATABASE_URL: connection refused, exit 1', async () => {
  const port = await freePort();
  const url = `postgres://${role}:${password}@127.0.0.1:${port}/x`;
  const runs = await Promise.all([run('demo', [], url), run('decider', [], url), run('projector', [], url)]);
  for (const [index, program] of (['demo', 'decider', 'projector'] as const).entries()) {
    expectOneLine(
      runs[index] as ProcessRun,
      1,
      new RegExp(
        `^${program}: cannot connect to 127\\.0\\.0\\.1:${port} \\(connection refused\\): is PostgreSQL running, and is DATABASE_URL right\\?\n$`,
      ),
    );
  }
});

test('a wrong password: the server refused it (28P01), exit 1', async () => {
  const wrong = `wrong-${randomBytes(8).toString('hex')}`;
  const url = as(database.url, role, wrong);
  const runs = await Promise.all([run('demo', [], url), run('decider', [], url), run('projector', [], url)]);
  for (const [index, program] of (['demo', 'decider', 'projector'] as const).entries()) {
    expectOneLine(
      runs[index] as ProcessRun,
      1,
      new RegExp(
        `^${program}: PostgreSQL at \\S+ refused the password of user ${role} \\(28P01\\): check the user and password in DATABASE_URL\n$`,
      ),
      [wrong, password],
    );
  }
});

test('a database that does not exist (3D000), exit 1', async () => {
  const missing = `fstore_missing_${randomBytes(4).toString('hex')}`;
  const url = as(withDatabase(database.url, missing), role, password);
  const runs = await Promise.all([run('demo', [], url), run('decider', [], url), run('projector', [], url)]);
  for (const [index, program] of (['demo', 'decider', 'projector'] as const).entries()) {
    expectOneLine(
      runs[index] as ProcessRun,
      1,
      new RegExp(`^${program}: database ${missing} does not exist on \\S+ \\(3D000\\): create it`),
    );
  }
});

test('an embedded PostgreSQL that cannot start: its one line, exit 1', async () => {
  // No build of PostgreSQL 13 ships with the demo: the database host fails before it starts anything.
  const result = await run('demo', ['--orders', '1'], undefined, { FSTORE_PG_VERSION: '13' });
  expectOneLine(result, 1, /^demo: .*FSTORE_PG_VERSION=13: PostgreSQL 13\b.*DATABASE_URL/, []);
});
