/**
 * Event metadata reaches projection handlers, whichever way the worker reads (log batches or leases), and a
 * handler that appends in answer to an event passes the conversation on (`causedBy`): the caused events carry the
 * same correlation id, with the handled event as their cause. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import {
  causedBy,
  createCommandHandler,
  createEventStore,
  type Database,
  type Decider,
  defineEvents,
  type EventOf,
  event,
  eventsOfCorrelation,
  type Metadata,
  type StoredEvent,
} from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { createProjection } from './projection.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 8 }));

const tasks = defineEvents('MetaTask', { TaskAdded: event<{ title: string }>() });
const notices = defineEvents('MetaNotice', { NoticeSent: event<{ task: string }>() });
const taskStore = createEventStore(db, tasks);
const noticeStore = createEventStore(db, notices);
beforeAll(async () => {
  await taskStore.register();
  await noticeStore.register();
});
const notify: Decider<{ task: string }, boolean, EventOf<typeof notices>> = {
  initialState: false,
  decide: (command, sent) => (sent ? [] : [{ type: 'NoticeSent', data: { task: command.task } }]),
  evolve: () => true,
};

test.each([
  ['log batches', true],
  ['leases', false],
])(
  'through %s, handlers see each event’s metadata, and what they append carries the conversation on',
  async (_, logBatches) => {
    const correlationId = `request-${randomUUID()}`;
    const headers = { user: 'ada' };
    const added: StoredEvent<EventOf<typeof tasks>>[] = [];
    for (let i = 0; i < 3; i++) {
      const [stored] = await taskStore.append(
        `task-${randomUUID()}`,
        [{ type: 'TaskAdded', data: { title: `t${i}` } }],
        {
          expectedLastEventId: null,
          metadata: { correlationId, causationId: `command-${i}`, headers },
        },
      );
      if (stored) added.push(stored);
    }

    const seen = new Map<string, Metadata | null>();
    const projection = createProjection({
      db,
      view: `notifier-${randomUUID()}`,
      events: [tasks],
      logBatches,
      pollIntervalMs: 20,
      async handle(e, tx) {
        if (!added.some((a) => a.eventId === e.eventId)) return;
        seen.set(e.eventId, e.metadata);
        // Appends in the handler's transaction: committed with the acknowledgement, or not at all.
        await createCommandHandler(noticeStore.with(tx), notify)(
          `notice-${e.deciderId}`,
          { task: e.deciderId },
          { metadata: causedBy(e), commandId: e.eventId },
        );
      },
    });
    await projection.start();
    try {
      await expect.poll(() => seen.size, { timeout: 60_000 }).toBe(added.length);
      await projection.idle();
    } finally {
      await projection.stop();
    }
    for (const a of added) {
      expect(seen.get(a.eventId)).toEqual({ correlationId, causationId: a.metadata?.causationId, headers });
    }
    // The conversation: three tasks, then each one's notice, caused by it.
    const conversation = await eventsOfCorrelation(db, correlationId);
    expect(conversation.slice(0, 3).map((row) => row.eventId)).toEqual(added.map((a) => a.eventId));
    const caused = conversation.slice(3).map((row) => ({
      decider: row.decider,
      causation: (row.metadata as { causation_id?: string }).causation_id,
    }));
    expect(caused).toHaveLength(3);
    expect(new Set(caused.map((row) => row.causation))).toEqual(new Set(added.map((a) => a.eventId)));
    expect(new Set(caused.map((row) => row.decider))).toEqual(new Set(['MetaNotice']));
  },
);
