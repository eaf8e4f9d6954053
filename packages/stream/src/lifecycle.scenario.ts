/**
 * Archiving and forgetting while writers and workers are busy. For FSTORE_TEST_LIFECYCLE_SECONDS (default 15 s), writers
 * open and close order streams (their payloads with a customer's personal field), two projection workers share a
 * view, and maintenance archives every closed stream the view has handled, again and again, and forgets customers.
 * At the end: every appended event was projected exactly once and in stream order; every stream is whole, in one
 * table or the other, and loads as appended; what was forgotten reads as forgotten; no writer, worker or
 * maintenance call failed; and archiving did move streams while the rest ran.
 */
import { randomUUID } from 'node:crypto';
import {
  archiveClosedStreams,
  createEventStore,
  type Database,
  defineEvents,
  event,
  forgetSubject,
  isForgotten,
  isTransientDatabaseError,
} from '@fstore/store';
import { createTestDatabase, tablesHolding } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, expect, test } from 'vitest';
import { createProjection } from './projection.js';
import { waitUntil } from './test-support/invariants.js';
import { sleep } from './test-support/scenario-fixtures.js';

const seconds = Number(process.env.FSTORE_TEST_LIFECYCLE_SECONDS ?? 15);
if (!Number.isFinite(seconds) || seconds <= 0)
  throw new Error(`FSTORE_TEST_LIFECYCLE_SECONDS=${seconds} is not a positive number`);

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 24 }));

type Placed = { customerId: string; email: string; item: number };
const orders = defineEvents('LifecycleOrder', {
  Placed: event<Placed, 'email'>({ personal: { subject: (data) => data.customerId, fields: ['email'] } }),
  Shipped: event<{ customerId: string }>({ final: true }),
});
const store = createEventStore(db, orders);
const customers = Array.from({ length: 12 }, (_, i) => `customer-${i}-${randomUUID()}`);

test(
  `archiving and forgetting for ${seconds} s while writers append and two workers project`,
  async () => {
    await store.register();
    await db.execute(sql`CREATE TABLE handled (event_id uuid PRIMARY KEY, decider_id text NOT NULL,
      "offset" bigint NOT NULL, seq bigserial, times int NOT NULL DEFAULT 1)`);
    const view = 'lifecycle-orders';
    const workers = ['w1', 'w2'].map(() =>
      createProjection({
        db,
        view,
        events: [orders],
        pollIntervalMs: 20,
        concurrency: 4,
        batchSize: 20,
        leaseSeconds: 10,
        async handle(e, tx) {
          // The read model keeps no personal data: only which event it saw, and how often.
          await tx.execute(sql`INSERT INTO handled (event_id, decider_id, "offset") VALUES (${e.eventId}, ${e.deciderId}, ${e.offset})
            ON CONFLICT (event_id) DO UPDATE SET times = handled.times + 1`);
        },
      }),
    );
    // One after the other: the first registers the view.
    for (const worker of workers) await worker.start();

    /** Per stream, the ids of the events appended to it, in order; and when each customer's append returned. */
    const appended = new Map<string, string[]>();
    const appendedAt: { customerId: string; email: string; eventId: string; at: number }[] = [];
    const failures: unknown[] = [];
    const deadline = Date.now() + seconds * 1000;
    let running = true;

    const writer = async (w: number) => {
      for (let n = 0; Date.now() < deadline; n++) {
        const id = `order-${w}-${n}-${randomUUID()}`;
        const customerId = customers[(w * 7 + n) % customers.length] as string;
        const ids: string[] = [];
        appended.set(id, ids);
        let previous: string | null = null;
        for (let item = 0; item < 1 + (n % 4); item++) {
          const email = `${customerId}-${randomUUID()}@example.com`;
          const [stored] = await store.append(id, [{ type: 'Placed', data: { customerId, email, item } }], {
            expectedLastEventId: previous,
          });
          previous = stored?.eventId ?? null;
          appendedAt.push({ customerId, email, eventId: previous as string, at: Date.now() });
          ids.push(previous as string);
        }
        const [closed] = await store.append(id, [{ type: 'Shipped', data: { customerId } }], {
          expectedLastEventId: previous,
        });
        ids.push(closed?.eventId as string);
      }
    };

    let archivedWhileBusy = 0;
    let transientMaintenanceErrors = 0;
    const forgottenAt = new Map<string, number>();
    const maintenance = async () => {
      for (let round = 0; running; round++) {
        try {
          archivedWhileBusy += await archiveClosedStreams(db, { closedBefore: new Date(), batchSize: 25 });
          if (round % 5 === 4) {
            const customerId = customers[forgottenAt.size % customers.length] as string;
            if (!forgottenAt.has(customerId)) {
              forgottenAt.set(customerId, Date.now());
              await forgetSubject(db, customerId);
            }
          }
        } catch (error) {
          // A deadlock or serialization failure is PostgreSQL's "run it again", and the next round does.
          if (!isTransientDatabaseError(error)) throw error;
          transientMaintenanceErrors++;
        }
        await sleep(100);
      }
    };

    const maintaining = maintenance().catch((error: unknown) => {
      failures.push(error);
    });
    await Promise.all(
      Array.from({ length: 6 }, (_, w) =>
        writer(w).catch((error: unknown) => {
          failures.push(error);
        }),
      ),
    );
    running = false;
    await maintaining;
    expect(failures).toEqual([]);

    // Every appended event reaches the read model; then everything closed can be archived.
    const total = [...appended.values()].reduce((sum, ids) => sum + ids.length, 0);
    await waitUntil(
      async () => {
        const [row] = await database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM handled`;
        return row?.n === total;
      },
      { timeoutMs: budget(60_000), what: `the view to handle all ${total} events` },
    );
    for (const worker of workers) await worker.stop();
    await archiveClosedStreams(db, { closedBefore: new Date(Date.now() + 60_000) });

    // Exactly once, in stream order.
    const handled = await database.sql<
      { event_id: string; decider_id: string; offset: string; times: number }[]
    >`
      SELECT event_id, decider_id, "offset", times FROM handled ORDER BY seq`;
    expect(handled.filter((row) => row.times !== 1)).toEqual([]);
    expect(new Set(handled.map((row) => row.event_id))).toEqual(new Set([...appended.values()].flat()));
    const seen = new Map<string, number>();
    for (const row of handled) {
      expect(Number(row.offset), `stream ${row.decider_id} handled in order`).toBeGreaterThan(
        seen.get(row.decider_id) ?? 0,
      );
      seen.set(row.decider_id, Number(row.offset));
    }

    // Every stream whole, in one table, archived (all are closed and handled), and loading as appended.
    const placement = await database.sql<{ decider_id: string; hot: number; archived: number }[]>`
      SELECT decider_id, count(*) FILTER (WHERE t = 'hot')::int AS hot, count(*) FILTER (WHERE t = 'archived')::int AS archived
      FROM (SELECT decider_id, 'hot' AS t FROM events WHERE decider = 'LifecycleOrder'
            UNION ALL SELECT decider_id, 'archived' FROM archived_events WHERE decider = 'LifecycleOrder') s
      GROUP BY decider_id`;
    expect(placement.filter((row) => row.hot > 0)).toEqual([]);
    expect(placement).toHaveLength(appended.size);
    for (const [id, ids] of appended) {
      const loaded = await store.loadStream(id);
      expect(loaded.events.map((e) => e.eventId)).toEqual(ids);
      expect(loaded.archived?.events).toBe(ids.length);
    }
    expect(archivedWhileBusy).toBeGreaterThan(0);
    expect(parked(await database.sql`SELECT count(*)::int AS n FROM parked_events`)).toBe(0);

    // What was appended before its customer was forgotten reads as forgotten, and is nowhere in plain text.
    expect(forgottenAt.size).toBeGreaterThan(0);
    const before = appendedAt.filter((a) => {
      const at = forgottenAt.get(a.customerId);
      return at !== undefined && a.at < at;
    });
    expect(before.length).toBeGreaterThan(0);
    const emails = new Map<string, unknown>();
    for (const id of appended.keys())
      for (const e of (await store.loadStream(id)).events)
        if (e.type === 'Placed') emails.set(e.eventId, e.data.email);
    expect(before.filter((a) => !isForgotten(emails.get(a.eventId)))).toEqual([]);
    for (const sample of before.slice(0, 5))
      expect(await tablesHolding(database.sql, sample.email)).toEqual([]);
    console.info(
      `lifecycle: ${appended.size} streams, ${total} events; ${archivedWhileBusy} streams archived while busy; ` +
        `${forgottenAt.size} customers forgotten (${before.length} appends before it); ` +
        `${transientMaintenanceErrors} transient maintenance errors retried`,
    );
  },
  budget(seconds * 1000 + 120_000),
);

const parked = (rows: { n?: unknown }[]) => Number(rows[0]?.n ?? 0);
