/**
 * projectionSpec and the fresh databases: the same specification on PGlite in process and on a PostgreSQL server
 * (the test run's own, embedded unless DATABASE_URL or a container image is set).
 */

import type { Database } from '@fstore/store';
import { EventParkedError } from '@fstore/stream';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, inject, test } from 'vitest';
import { type FreshDatabase, pgliteDatabase, postgresDatabase } from './databases.js';
import { projectionSpec } from './projection-spec.js';
import { createOpenTasks, taskEvents } from './test-support/tasks.js';

const server = inject('fstoreTestServer' as never) as { adminUrl: string };
const databases: FreshDatabase[] = [];
afterAll(() => Promise.all(databases.map((database) => database.drop())));

/** The open-tasks projection: a row per task added and not done. */
const openTasks = (db: Database, view: string) =>
  projectionSpec({
    db,
    view,
    events: [taskEvents],
    async handle(e, tx) {
      if (e.type === 'TaskAdded')
        await tx.execute(sql`INSERT INTO open_tasks VALUES (${e.deciderId}, ${e.data.title})`);
      else await tx.execute(sql`DELETE FROM open_tasks WHERE id = ${e.deciderId}`);
    },
  });

describe.each([
  { on: 'PGlite, in process', fresh: () => pgliteDatabase() },
  { on: 'PostgreSQL', fresh: () => postgresDatabase(server.adminUrl, { max: 8 }) },
])('on $on', ({ fresh }) => {
  test('given events on several streams, drain() returns once the read model holds them all', async () => {
    const database = await fresh();
    databases.push(database);
    await database.db.execute(createOpenTasks);
    const spec = openTasks(database.db, 'open-tasks');
    await spec.given('t1', [{ type: 'TaskAdded', data: { title: 'write docs' } }]);
    await spec.given('t2', [
      { type: 'TaskAdded', data: { title: 'ship it' } },
      { type: 'TaskDone', data: { by: 'Ada' } },
    ]);
    await spec.given('t3', [{ type: 'TaskAdded', data: { title: 'celebrate' } }]);
    await spec.drain();
    const rows = (await database.db.execute(sql`SELECT id, title FROM open_tasks ORDER BY id`)) as unknown as
      | { rows: unknown[] }
      | unknown[];
    expect(Array.isArray(rows) ? rows : rows.rows).toEqual([
      { id: 't1', title: 'write docs' },
      { id: 't3', title: 'celebrate' },
    ]);
    // More events later, and another drain: the view goes on from where it was.
    await spec.given('t1', [{ type: 'TaskDone', data: { by: 'Grace' } }]);
    await spec.drain();
    const after = (await database.db.execute(sql`SELECT id FROM open_tasks ORDER BY id`)) as unknown as
      | { rows: unknown[] }
      | unknown[];
    expect(Array.isArray(after) ? after : after.rows).toEqual([{ id: 't3' }]);
  });
});

test('a handler that fails parks the event: drain() rejects naming it, instead of waiting out its timeout', async () => {
  const database = await pgliteDatabase();
  databases.push(database);
  const spec = projectionSpec({
    db: database.db,
    view: 'failing',
    events: [taskEvents],
    maxAttempts: 1,
    handle() {
      throw new Error('this handler cannot');
    },
  });
  await spec.given('t1', [{ type: 'TaskAdded', data: { title: 'x' } }]);
  const failure = await spec.drain().catch((e: unknown) => e);
  expect(failure).toBeInstanceOf(EventParkedError);
  expect((failure as EventParkedError).parkedError).toContain('this handler cannot');
});
