/**
 * out_of_order_events (migrations 0025, 0026): the events that come before their previous event in the log's order
 * (transaction id, then offset), which log batches must check. The append trigger records each of them and no other,
 * whichever way the event is appended, and the migration records those appended before it existed.
 */
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate as drizzleMigrate } from 'drizzle-orm/postgres-js/migrator';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';
import { migrationsFolder, migrationsSchema, migrationsTable } from './migrate.js';
import { appendNext, appendOutOfOrder } from './test-support/out-of-order.js';

const databases: TestDatabase[] = [];
const folders: string[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.drop()));
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

async function recorded(sql: postgres.Sql, offsets: number[]) {
  const rows = await sql<{ offset: string }[]>`
    SELECT "offset" FROM out_of_order_events WHERE "offset" = ANY (${offsets}::bigint[]) ORDER BY "offset"`;
  return rows.map((row) => Number(row.offset));
}

async function newDecider(sql: postgres.Sql) {
  const decider = `decider-${randomUUID()}`;
  await sql`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  return decider;
}

describe('the append trigger records the events that come before their previous one', () => {
  test('an event appended after its previous one by a transaction that took its id first is recorded, with its transaction id; the others are not', async () => {
    const database = await createTestDatabase();
    databases.push(database);
    const { sql } = database;
    const decider = await newDecider(sql);
    const id = `s-${randomUUID()}`;
    const first = await appendNext(sql, decider, id);
    const [previous, late] = await appendOutOfOrder(sql, decider, id);
    const next = await appendNext(sql, decider, id);
    expect(await recorded(sql, [first, previous, late, next])).toEqual([late]);
    const [row] = await sql<{ same: boolean }[]>`
      SELECT o.transaction_id = e.transaction_id AS same
      FROM out_of_order_events o JOIN events e ON e."offset" = o."offset" WHERE o."offset" = ${late}`;
    expect(row?.same).toBe(true);
  });

  test('so are those of append_events and of a plain INSERT; a batch in one transaction adds nothing', async () => {
    const database = await createTestDatabase();
    databases.push(database);
    const { sql } = database;
    const decider = await newDecider(sql);
    const id = `s-${randomUUID()}`;
    const batch = await sql<{ offset: string }[]>`
      SELECT "offset" FROM append_events(${decider}, ${id}, NULL, ${randomUUID()},
        ${sql.json([
          { event: 'happened', event_id: randomUUID(), data: {} },
          { event: 'happened', event_id: randomUUID(), data: {} },
        ])}::jsonb)`;
    const early = await sql.reserve();
    let viaInsert = 0;
    try {
      await early`BEGIN`;
      await early`SELECT pg_current_xact_id()`;
      const previous = await appendNext(sql, decider, id);
      const [row] = await early<{ offset: string }[]>`
        INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
        SELECT 'happened', ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()}, e.event_id
        FROM events e WHERE e."offset" = ${previous}
        RETURNING "offset"`;
      viaInsert = Number(row?.offset);
      await early`COMMIT`;
    } finally {
      early.release();
    }
    const offsets = batch.map((row) => Number(row.offset));
    expect(await recorded(sql, [...offsets, viaInsert])).toEqual([viaInsert]);
  });
});

describe('an upgrade records the events appended before migration 0026', () => {
  const journal = JSON.parse(readFileSync(join(migrationsFolder, 'meta', '_journal.json'), 'utf8')) as {
    entries: { tag: string }[];
  };

  /** A copy of the migrations folder whose journal stops before `tag`. */
  function migrationsBefore(tag: string): string {
    const index = journal.entries.findIndex((entry) => entry.tag === tag);
    expect(index).toBeGreaterThan(0);
    const folder = mkdtempSync(join(tmpdir(), 'fstore-before-'));
    folders.push(folder);
    cpSync(migrationsFolder, folder, { recursive: true });
    writeFileSync(
      join(folder, 'meta', '_journal.json'),
      JSON.stringify({ ...journal, entries: journal.entries.slice(0, index) }, null, 2),
    );
    return folder;
  }
  const migrateFolder = (sql: postgres.Sql, folder: string) =>
    drizzleMigrate(drizzle(sql), { migrationsFolder: folder, migrationsTable, migrationsSchema });

  test('events out of order before the upgrade are in out_of_order_events after it, and no other', async () => {
    const database = await createTestDatabase({ from: 'empty' });
    databases.push(database);
    const { sql } = database;
    await migrateFolder(sql, migrationsBefore('0026_claims_look_up_fewer_previous_events'));
    const decider = await newDecider(sql);
    const id = `s-${randomUUID()}`;
    const first = await appendNext(sql, decider, id);
    const [previous, late] = await appendOutOfOrder(sql, decider, id);
    const next = await appendNext(sql, decider, id);
    // The trigger of then recorded nothing.
    expect(await recorded(sql, [first, previous, late, next])).toEqual([]);
    await migrateFolder(sql, migrationsFolder);
    expect(await recorded(sql, [first, previous, late, next])).toEqual([late]);
    expect(await sql`SELECT 1 FROM out_of_order_events`).toHaveLength(1);
  });
});
