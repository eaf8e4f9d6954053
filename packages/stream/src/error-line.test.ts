/**
 * The error-to-line mapping on errors shaped as the driver, drizzle and Node make them: the cases the process tests
 * (cli.test.ts, the demo's cli-errors.test.ts) cannot provoke cheaply. Classification is by code only.
 */
import { parseArgs } from 'node:util';
import { expect, test } from 'vitest';
import { describeFailure, FstoreNotInstalledError, UsageError } from './error-line.js';

const url = 'postgres://ada:s3cret-pw@db.example.com:6543/orders';
const coded = (message: string, fields: Record<string, unknown>) => Object.assign(new Error(message), fields);
const line = (error: unknown) => describeFailure('fstore status', error, { url, help: 'fstore --help' });

test('a timed-out connection, from Node or from postgres.js', () => {
  for (const code of ['ETIMEDOUT', 'CONNECT_TIMEOUT']) {
    expect(
      line(coded(`write ${code} db.example.com:6543`, { code, address: 'db.example.com', port: 6543 })),
    ).toEqual({
      line: 'fstore status: cannot connect to db.example.com:6543 (timed out): is PostgreSQL running there, can this machine reach it, and is DATABASE_URL right?',
      exitCode: 1,
    });
  }
});

test("codes are found under drizzle's wrapping and in an AggregateError (localhost: ::1, then 127.0.0.1)", () => {
  const refused = coded('connect ECONNREFUSED ::1:6543', {
    code: 'ECONNREFUSED',
    address: '::1',
    port: 6543,
  });
  const wrapped = new Error('Failed query: SELECT * FROM view_status()\nparams: ', {
    cause: new AggregateError([refused], ''),
  });
  expect(line(wrapped).line).toBe(
    'fstore status: cannot connect to ::1:6543 (connection refused): is PostgreSQL running, and is DATABASE_URL right?',
  );
  const undefinedFunction = new Error('Failed query: SELECT * FROM view_status()\nparams: ', {
    cause: coded('function view_status() does not exist', { code: '42883', severity: 'ERROR' }),
  });
  expect(line(undefinedFunction).line).toBe(
    "fstore status: fstore is not installed in database orders, or not all of it (function view_status() does not exist, 42883): run its migrations (drizzle-kit migrate with @fstore/schema's config, or migrate() from @fstore/schema)",
  );
});

test('EPIPE has the shape of a SQLSTATE, and is read as the network error it is', () => {
  expect(line(coded('write EPIPE', { code: 'EPIPE' })).line).toBe(
    'fstore status: the connection to db.example.com:6543 was closed by the server or the network: is PostgreSQL running, and is DATABASE_URL right?',
  );
});

test('the password, and the URL that holds it, never reach the line', () => {
  const leaky = coded(`could not use ${url} (at ${url.replace('orders', 'other')})`, { code: 'XX000' });
  const { line: text } = line(leaky);
  expect(text).not.toContain('s3cret-pw');
  expect(text).toBe(
    'fstore status: could not use DATABASE_URL (at postgres://ada:***@db.example.com:6543/other) (XX000)',
  );
});

test("usage errors, ours and parseArgs', exit 2 with a pointer to the help", () => {
  expect(line(new UsageError('unknown command stats'))).toEqual({
    line: 'fstore status: unknown command stats (see fstore --help)',
    exitCode: 2,
  });
  let parseError: unknown;
  try {
    parseArgs({ args: ['--verbose'], options: {} });
  } catch (error) {
    parseError = error;
  }
  expect(line(parseError)).toEqual({
    line: "fstore status: Unknown option '--verbose' (see fstore --help)",
    exitCode: 2,
  });
});

test('a missing fstore says which database, and whether some migrations ran', () => {
  expect(line(new FstoreNotInstalledError('orders', ['view_status()'], true)).line).toBe(
    "fstore status: fstore in database orders is older than this program (it lacks view_status()): run its migrations (drizzle-kit migrate with @fstore/schema's config, or migrate() from @fstore/schema)",
  );
});

test('anything else: its message on one line, never its stack', () => {
  const bug = new TypeError('first\n  second');
  expect(line(bug)).toEqual({ line: 'fstore status: first / second', exitCode: 1 });
});
