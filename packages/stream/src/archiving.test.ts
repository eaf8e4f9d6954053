/**
 * Archived streams, from the views' side: a projection that handled a stream carries on after it is archived; a
 * rebuild from before it is refused with HistoryMissingError (nothing reset) unless the caller accepts the gap, and
 * then replays every stream but the archived ones; view_status and `fstore status` count what left the log. On a
 * real PostgreSQL, as its owner.
 */
import { randomUUID } from 'node:crypto';
import { archiveStream, createEventStore, type Database, defineEvents, event } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { HistoryMissingError } from './errors.js';
import { viewStatus } from './functions.js';
import { createProjection } from './projection.js';
import { waitForView } from './read-your-writes.js';
import { rebuildProjection } from './rebuild.js';
import { formatStatusTable } from './status.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 8 }));

const tickets = defineEvents('ArchivedTicket', {
  Opened: event<{ title: string }>(),
  Closed: event<Record<string, never>>({ final: true }),
});
const store = createEventStore(db, tickets);
beforeAll(async () => {
  await store.register();
  await db.execute(
    sql`CREATE TABLE ticket_list (id text PRIMARY KEY, title text NOT NULL, closed boolean NOT NULL)`,
  );
});

const rows = async () =>
  (await database.sql<{ id: string }[]>`SELECT id FROM ticket_list ORDER BY id`).map((row) => row.id);

test('a rebuild from before an archived stream is refused unless accepted, and then replays all but it', async () => {
  const view = `ticket-list-${randomUUID()}`;
  const projection = createProjection({
    db,
    view,
    events: [tickets],
    pollIntervalMs: 20,
    async handle(e, tx) {
      if (e.type === 'Opened')
        await tx.execute(sql`INSERT INTO ticket_list VALUES (${e.deciderId}, ${e.data.title}, false)`);
      else await tx.execute(sql`UPDATE ticket_list SET closed = true WHERE id = ${e.deciderId}`);
    },
  });
  const [done, open] = ['a-done', 'b-open'].map((name) => `${name}-${randomUUID()}`) as [string, string];
  const opened = await store.append(done, [{ type: 'Opened', data: { title: 'done' } }], {
    expectedLastEventId: null,
  });
  const [closed] = await store.append(done, [{ type: 'Closed', data: {} }], {
    expectedLastEventId: opened[0]?.eventId ?? null,
  });
  const [last] = await store.append(open, [{ type: 'Opened', data: { title: 'open' } }], {
    expectedLastEventId: null,
  });
  await projection.start();
  try {
    await waitForView(db, view, { deciderId: done, offset: closed?.offset ?? 0 }, { timeoutMs: 60_000 });
    await waitForView(db, view, { deciderId: open, offset: last?.offset ?? 0 }, { timeoutMs: 60_000 });
    expect(await rows()).toEqual([done, open]);

    // The view handled it: it may go, and the view carries on.
    await archiveStream(db, 'ArchivedTicket', done);
    const [status] = (await viewStatus(db)).filter((s) => s.view === view);
    expect(status).toMatchObject({ archivedStreams: 1, archivedEvents: 2, eventsBehind: 0 });
    expect(formatStatusTable(status ? [status] : [])).toMatch(
      new RegExp(`${view}.*\\s1 \\(2 events\\)$`, 'm'),
    );

    const reset = async (tx: Parameters<Parameters<typeof rebuildProjection>[1]['reset']>[0]) => {
      await tx.execute(sql`DELETE FROM ticket_list`);
    };
    const refused = await rebuildProjection(db, { view, reset }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(HistoryMissingError);
    expect((refused as HistoryMissingError).missing).toEqual({
      archivedStreams: 1,
      archivedEvents: 2,
      removedStreams: 0,
      removedEvents: 0,
    });
    // Nothing was reset: the read model and the view's positions are as they were.
    expect(await rows()).toEqual([done, open]);
    expect((await viewStatus(db)).find((s) => s.view === view)?.eventsBehind).toBe(0);

    const missing = await rebuildProjection(db, { view, reset, acceptMissingHistory: true });
    expect(missing.archivedStreams).toBe(1);
    await waitForView(db, view, { deciderId: open, offset: last?.offset ?? 0 }, { timeoutMs: 60_000 });
    expect(await rows()).toEqual([open]);
  } finally {
    await projection.stop();
  }
});
