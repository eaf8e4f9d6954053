/**
 * sql/schema.sql is the schema the migrations build: this file migrates a fresh database (the run's template, which
 * the global setup migrated) and compares the dump with the checked-in file. With FSTORE_SCHEMA_DUMP=write it
 * rewrites the file instead (`pnpm check:migrations --write-schema`). `pnpm check:migrations` runs it, so a migration
 * that changes the schema without the dump fails there as here.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createTestDatabase } from '@fstore/test-harness';
import { afterAll, expect, test } from 'vitest';
import { migrationsFolder } from './migrate.js';
import { schemaDump } from './test-support/schema-dump.js';

const file = new URL('../sql/schema.sql', import.meta.url);
const journal = JSON.parse(readFileSync(`${migrationsFolder}/meta/_journal.json`, 'utf8')) as {
  entries: { tag: string }[];
};

const db = await createTestDatabase();
afterAll(() => db.drop());

test('sql/schema.sql is the schema the migrations build (pnpm check:migrations --write-schema regenerates it)', async () => {
  const dump = await schemaDump(
    db.sql,
    journal.entries.map((entry) => entry.tag),
  );
  if (process.env.FSTORE_SCHEMA_DUMP === 'write') writeFileSync(file, dump);
  expect(readFileSync(file, 'utf8')).toBe(dump);
});
