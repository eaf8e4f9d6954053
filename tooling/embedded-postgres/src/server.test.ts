import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { describe, expect, test } from 'vitest';
import { EmbeddedPostgresError, parseVersion, startEmbeddedPostgres } from './index.js';
import { holdPort } from './test-support/run.js';

const connect = (url: string) => postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });

describe('an embedded PostgreSQL', () => {
  test('stops and starts again with its data kept; destroy deletes its folder', async () => {
    const server = await startEmbeddedPostgres();
    let folder = '';
    try {
      let sql = connect(server.adminUrl);
      const [row] = await sql<{ dir: string }[]>`SELECT current_setting('data_directory') AS dir`;
      folder = dirname(row?.dir ?? '');
      await sql`CREATE TABLE kept (n int)`;
      await sql`INSERT INTO kept VALUES (1)`;
      await sql.end();

      await server.stop();
      expect(server.running).toBe(false);
      sql = connect(server.adminUrl);
      await expect(sql`SELECT 1`).rejects.toThrow(/ECONNREFUSED/);
      await sql.end();

      await server.start();
      expect(server.running).toBe(true);
      sql = connect(server.adminUrl);
      expect(await sql`SELECT n FROM kept`).toEqual([{ n: 1 }]);
      await sql.end();
    } finally {
      await server.destroy();
    }
    expect(server.running).toBe(false);
    expect(folder).toMatch(/fstore-pg-/);
    expect(existsSync(folder)).toBe(false);
  });

  test('an immediate stop is a crash: committed rows survive, an open transaction does not', async () => {
    const server = await startEmbeddedPostgres();
    try {
      const sql = connect(server.adminUrl);
      await sql`CREATE TABLE kept (n int)`;
      await sql`INSERT INTO kept VALUES (1)`;
      const open = await sql.reserve();
      await open`BEGIN`;
      await open`INSERT INTO kept VALUES (2)`;
      await server.stop({ mode: 'immediate' });
      expect(server.running).toBe(false);
      open.release();
      await sql.end({ timeout: 1 });

      await server.start();
      const after = connect(server.adminUrl);
      expect(await after`SELECT n FROM kept`).toEqual([{ n: 1 }]);
      await after.end();
    } finally {
      await server.destroy();
    }
  });

  test('runs PostgreSQL 14 as well as 18', async () => {
    const server = await startEmbeddedPostgres({ version: '14' });
    try {
      expect(server.description).toBe('embedded PostgreSQL 14');
      const sql = connect(server.adminUrl);
      const [row] = await sql<{ server_version: string }[]>`SHOW server_version`;
      expect(row?.server_version).toMatch(/^14\./);
      await sql.end();
    } finally {
      await server.destroy();
    }
  });
});

describe('when it cannot start, one line says why and what to do', () => {
  const expectOneLine = (error: unknown) => {
    expect(error).toBeInstanceOf(EmbeddedPostgresError);
    const { message, stack } = error as EmbeddedPostgresError;
    expect(message).not.toContain('\n');
    expect(stack).toBe(`EmbeddedPostgresError: ${message}`);
    return message;
  };

  test('a port another program listens on', async () => {
    const { port, close } = await holdPort();
    try {
      const message = expectOneLine(await startEmbeddedPostgres({ port }).catch((error: unknown) => error));
      expect(message).toMatch(
        new RegExp(
          `^embedded PostgreSQL \\d+ cannot start: port ${port} is taken by another program \\(.*Address already in use.*\\); choose another port, or set DATABASE_URL`,
        ),
      );
    } finally {
      await close();
    }
  });

  test('no build where it should be', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'fstore-no-build-'));
    try {
      const message = expectOneLine(
        await startEmbeddedPostgres({ packageDir: empty }).catch((error: unknown) => error),
      );
      expect(message).toMatch(/cannot start: .*initdb is missing .*; set DATABASE_URL/);
    } finally {
      rmSync(empty, { recursive: true });
    }
  });

  test('a version with no build', () => {
    expect(() => parseVersion('13')).toThrow(EmbeddedPostgresError);
    expect(() => parseVersion('13')).toThrow(
      'PostgreSQL 13 has no embedded build here; choose one of 14, 15',
    );
  });
});
