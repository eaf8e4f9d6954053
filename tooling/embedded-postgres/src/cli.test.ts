/** What a person sees: command-line programs print one line when the server cannot start, never a stack. */
import { describe, expect, test } from 'vitest';
import { holdPort, runTs } from './test-support/run.js';

describe('command-line programs', () => {
  test('a server that cannot start: one line on stderr, exit code 1', async () => {
    const { port, close } = await holdPort();
    try {
      const ran = await runTs('src/test-support/cli.ts', [`--port=${port}`]);
      expect(ran.code).toBe(1);
      expect(ran.stdout).toBe('');
      expect(ran.stderr).toMatch(
        new RegExp(
          `^cli: embedded PostgreSQL \\d+ cannot start: port ${port} is taken by another program .*; choose another port, or set DATABASE_URL[^\\n]*\\n$`,
        ),
      );
      expect(ran.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await close();
    }
  });

  test('with-postgres: a version with no build, in one line', async () => {
    const ran = await runTs('src/with-postgres.ts', ['--', 'true'], {
      env: { FSTORE_PG_VERSION: '13', DATABASE_URL: '' },
    });
    expect(ran.code).toBe(1);
    expect(ran.stderr).toBe(
      'with-postgres: FSTORE_PG_VERSION=13: PostgreSQL 13 has no embedded build here; choose one of 14, 15, 16, 17, 18, or set DATABASE_URL to a PostgreSQL server of your own\n',
    );
  });

  test('with-postgres runs the command with DATABASE_URL and exits with its code', async () => {
    const ran = await runTs('src/with-postgres.ts', ['--', 'sh', '-c', 'echo "$DATABASE_URL"; exit 3'], {
      env: { DATABASE_URL: '' },
    });
    expect(ran.code).toBe(3);
    expect(ran.stdout).toMatch(/^postgres:\/\/postgres:fstore@127\.0\.0\.1:\d+\/fstore_\d+\n$/);
  });
});
