/**
 * Views registered while appends run. Since 0010_appends_write_only_the_event an append reads no view and writes
 * no lock row: a view's lock rows appear when it advances over the log (advance_view, which lease_events and
 * stream_events call first), and its frontier passes only transactions that have ended. So a registration neither
 * waits for the appends in flight nor holds new ones back, and an append in flight while a view registers is read
 * once it commits: its stream gets its lock row, at its head, and its events are delivered. A stream left without
 * one (or behind) would be a stream the view does not read until its next event.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { appendOne, registerDecider } from './test-support/decider-fixture.js';

const db = await createTestDatabase();
afterAll(() => db.drop());

beforeAll(async () => {
  await registerDecider(db.sql);
  // Streams that exist before any view registers (one of two events, one of one): each must get its lock row.
  const existing = `existing-${randomUUID()}`;
  const first = await appendOne(db.sql, existing, null);
  await appendOne(db.sql, existing, first.event_id);
  await appendOne(db.sql, `existing-${randomUUID()}`, null);
});

/** Streams of the log whose lock row for `view` is missing, or not at the stream's last event. */
const streamsBehind = (view: string) =>
  db.sql<{ decider_id: string; head: string; lock_offset: string | null }[]>`
    SELECT e.decider_id, max(e."offset")::text AS head, l."offset"::text AS lock_offset
    FROM events e LEFT JOIN locks l ON l.view = ${view} AND l.decider_id = e.decider_id
    GROUP BY e.decider_id, l."offset"
    HAVING l."offset" IS DISTINCT FROM max(e."offset")`;

type Leased = { lease_id: string; decider_id: string; offset: string };

/** One lease of `view` on `sql`, every stream acknowledged up to its last delivered event; returns what came. */
async function leaseAndAck(sql: postgres.Sql, view: string): Promise<Leased[]> {
  const rows = await sql<Leased[]>`
    SELECT lease_id, decider_id, "offset"::text AS "offset" FROM lease_events(${view}, 50, 100, 30)`;
  const last = new Map<string, Leased>();
  for (const row of rows) last.set(row.decider_id, row);
  for (const row of last.values()) {
    await sql`SELECT 1 FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}::uuid, ${row.offset}::bigint)`;
  }
  return rows;
}

describe('views registered while appends run', () => {
  test('two connections register one view at once: it is registered once, and its first advance gives every existing stream its lock row', async () => {
    const view = `view-${randomUUID()}`;
    const registrars = [db.connect({ max: 1 }), db.connect({ max: 1 })];
    await Promise.all(
      registrars.map((r) => r`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`),
    );
    const counts = () => db.sql`
      SELECT (SELECT count(*)::int FROM views WHERE view = ${view}) AS views,
             (SELECT count(*)::int FROM view_frontiers WHERE view = ${view}) AS frontiers,
             (SELECT count(*)::int FROM events) AS events,
             (SELECT count(DISTINCT decider_id)::int FROM events) AS streams,
             (SELECT count(*)::int FROM locks WHERE view = ${view}) AS locks`;
    const [registered] = await counts();
    expect(registered).toMatchObject({ views: 1, frontiers: 1, locks: 0 });
    // The first advance reads the whole log (the view starts in 2000): every event, every stream.
    const [advanced] = await db.sql<{ passed: number }[]>`SELECT advance_view(${view}) AS passed`;
    expect(advanced?.passed).toBe(registered?.events);
    const [after] = await counts();
    expect(after?.locks).toBe(after?.streams);
    expect(await streamsBehind(view)).toEqual([]);
    await Promise.all(registrars.map((c) => c.end()));
  });

  // Until 0010 these tests guarded a race closed by view_registration_gate: the append trigger gave a lock row only
  // to the views its transaction saw, and the registration read only committed events, so an append in flight
  // while a view registered was missed by both. Now nothing at append time depends on the views: what must hold is
  // that the view's frontier never passes the append in flight, so that it is read once it commits.
  /**
   * Appends to `deciderId` in a transaction held open while another transaction, begun after it, appends to a
   * stream of its own and commits; meanwhile another connection registers `view` (it must finish: it waits for no
   * append) and a consumer advances the view and leases. The frontier must stop below the open transaction: neither
   * its event nor the later committed one (past it in the log's transaction order) is passed or delivered yet. Then
   * the append commits. Returns the appended offset, the view's lock row for the stream, what the consumer saw while
   * the append was open and what it gets after.
   */
  async function appendWhileRegistering(view: string, deciderId: string, previousId: string | null) {
    const writer = db.connect({ max: 1 });
    const registrar = db.connect({ max: 1 });
    const consumer = db.connect({ max: 1 });
    const [{ pid } = { pid: 0 }] = await registrar<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    let offset = '';
    let outcome = '';
    let registration: Promise<unknown> = Promise.resolve();
    const whileOpen = {
      leased: [] as string[],
      laterLeased: [] as string[],
      frontierBelowAppend: false,
      lockOffset: null as string | null,
    };
    const laterStream = `later-${randomUUID()}`;
    let later = '';
    await writer.begin(async (tx) => {
      offset = (await appendOne(tx as unknown as postgres.Sql, deciderId, previousId)).offset;
      const [{ xid } = { xid: '' }] = await tx<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
      // A transaction with a later id, committed before the open one: a horizon that ignored running
      // transactions would move the frontier past the open one here.
      later = (await appendOne(db.sql, laterStream, null)).offset;
      let settled = false;
      registration = registrar`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`.then(
        () => {
          settled = true;
        },
        (error: unknown) => {
          settled = true;
          throw error;
        },
      );
      registration.catch(() => {});
      // Counted in the registrar's state, not in time: it finishes, or it is seen waiting on a lock.
      const deadline = Date.now() + budget(10_000);
      while (!settled && !outcome) {
        const [row] = await db.sql<{ waiting: boolean }[]>`
          SELECT coalesce(wait_event_type = 'Lock', false) AS waiting FROM pg_stat_activity WHERE pid = ${pid}`;
        if (row?.waiting) outcome = 'the registration waited for the append';
        else if (Date.now() > deadline) throw new Error('the registration neither finished nor waited');
        else await new Promise((resolve) => setTimeout(resolve, 10));
      }
      outcome ||= 'the registration finished while the append was open';
      if (!settled) return;
      // A consumer while the append is open: the frontier stops below the append's transaction.
      const leased = await leaseAndAck(consumer, view);
      whileOpen.leased = leased.filter((row) => row.decider_id === deciderId).map((row) => row.offset);
      whileOpen.laterLeased = leased.filter((row) => row.decider_id === laterStream).map((row) => row.offset);
      const [frontier] = await consumer<{ below: boolean }[]>`
        SELECT transaction_id < ${xid}::xid8 AS below FROM view_frontiers WHERE view = ${view}`;
      whileOpen.frontierBelowAppend = frontier?.below ?? false;
      const [lock] = await consumer<{ offset: string }[]>`
        SELECT "offset"::text AS "offset" FROM locks WHERE view = ${view} AND decider_id = ${deciderId}`;
      whileOpen.lockOffset = lock?.offset ?? null;
    });
    await registration;
    // Committed: the next advance reads it, and the next lease delivers it.
    await consumer`SELECT advance_view(${view})`;
    const locks = await db.sql<{ offset: string }[]>`
      SELECT "offset"::text AS "offset" FROM locks WHERE view = ${view} AND decider_id = ${deciderId}`;
    const after = await leaseAndAck(consumer, view);
    const delivered = after.filter((row) => row.decider_id === deciderId).map((row) => row.offset);
    const laterDelivered = after.filter((row) => row.decider_id === laterStream).map((row) => row.offset);
    await Promise.all([writer.end(), registrar.end(), consumer.end()]);
    return { offset, locks, outcome, whileOpen, delivered, later, laterDelivered };
  }

  test('an append in flight while a view registers: once it commits, its new stream gets a lock row and its event is delivered', async () => {
    const { offset, locks, outcome, whileOpen, delivered, later, laterDelivered } =
      await appendWhileRegistering(`view-${randomUUID()}`, `in-flight-${randomUUID()}`, null);
    expect(outcome).toBe('the registration finished while the append was open');
    // While open: not passed over, no lock row, nothing delivered, and the later transaction waits behind it.
    expect(whileOpen).toEqual({
      leased: [],
      laterLeased: [],
      frontierBelowAppend: true,
      lockOffset: null,
    });
    expect(locks).toEqual([{ offset }]);
    expect(delivered).toEqual([offset]);
    expect(laterDelivered).toEqual([later]);
  });

  test('an append in flight while a view registers: once it commits, the existing stream’s lock row reaches the new head and both events are delivered', async () => {
    const deciderId = `in-flight-${randomUUID()}`;
    const first = await appendOne(db.sql, deciderId, null);
    const { offset, locks, outcome, whileOpen, delivered, later, laterDelivered } =
      await appendWhileRegistering(`view-${randomUUID()}`, deciderId, first.event_id);
    expect(outcome).toBe('the registration finished while the append was open');
    // While open: the committed first event is leased and acknowledged, the lock row stops at it.
    expect(whileOpen).toEqual({
      leased: [first.offset],
      laterLeased: [],
      frontierBelowAppend: true,
      lockOffset: first.offset,
    });
    expect(locks).toEqual([{ offset }]);
    expect(delivered).toEqual([offset]);
    expect(laterDelivered).toEqual([later]);
  });

  /**
   * Writers append for a while, to new streams and to streams that exist, each holding its transaction open a
   * little after the append (as a command handler writing other tables would). Meanwhile two connections register
   * the same view, and once they have, a consumer leases and acknowledges it all along. When the writers stop, the
   * consumer drains the view: every stream of the log must then have the view's lock row at its head, and every
   * event must have been delivered exactly once.
   *
   * Counted in the writers' progress, not in time, so that a slow machine changes how long it takes, not what it
   * shows: the registrations start once every writer has committed three transactions (two new streams, one append
   * to its own), and the writers stop once each has committed three more after the registrations finished (one of
   * each kind begun after them) and the consumer has leased as many times. The registrations must get through while
   * appends keep coming: if the writers commit `starvationBound` transactions meanwhile, they are starved.
   */
  async function registerDuringAppends(options: {
    holdMs: number;
    writers: number;
    starvationBound: number;
  }) {
    const view = `view-${randomUUID()}`;
    const writers = Array.from({ length: options.writers }, () => db.connect({ max: 1 }));
    const registrars = [db.connect({ max: 1 }), db.connect({ max: 1 })];
    const consumer = db.connect({ max: 1 });
    const streams = Array.from({ length: options.writers }, () => `busy-${randomUUID()}`);
    const heads = new Map<number, string>();
    for (const [i, id] of streams.entries()) heads.set(i, (await appendOne(db.sql, id, null)).event_id);
    let stop = false;
    let failure: unknown;
    const appended: string[] = [];
    /** Transactions each writer has committed. */
    const commits = writers.map(() => 0);
    const committed = () => commits.reduce((sum, n) => sum + n, 0);
    const work = writers.map(async (writer, w) => {
      try {
        while (!stop) {
          const n = commits[w] as number;
          await writer.begin(async (tx) => {
            if (n % 2 === 1) {
              // An existing stream (each writer its own, so that they do not conflict).
              const row = await appendOne(
                tx as unknown as postgres.Sql,
                streams[w] as string,
                heads.get(w) ?? null,
              );
              heads.set(w, row.event_id);
            } else {
              const id = `fresh-${randomUUID()}`;
              await appendOne(tx as unknown as postgres.Sql, id, null);
              appended.push(id);
            }
            await tx`SELECT pg_sleep(${options.holdMs / 1000})`;
          });
          commits[w] = n + 1;
        }
      } catch (error) {
        failure ??= error;
        throw error;
      }
    });
    for (const w of work) w.catch(() => {});
    const until = async (condition: () => boolean) => {
      while (!condition()) {
        if (failure) throw failure;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    };
    await until(() => commits.every((n) => n >= 3));
    const started = Date.now();
    const bound = committed() + options.starvationBound;
    let settled = false;
    const registration = Promise.all(
      registrars.map((r) => r`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`),
    ).finally(() => {
      settled = true;
    });
    registration.catch(() => {});
    await until(() => settled || committed() >= bound);
    const registered = settled;
    const registrationMs = Date.now() - started;
    const commitsDuringRegistration = committed() - (bound - options.starvationBound);
    const delivered: number[] = [];
    let leasesWhileWriting = 0;
    let deliveredWhileWriting = 0;
    if (registered) {
      await registration;
      const after = [...commits];
      // The consumer leases while the writers append; they stop once it has leased as often as each has committed.
      while (!commits.every((n, w) => n >= (after[w] as number) + 3) || leasesWhileWriting < 3) {
        if (failure) throw failure;
        const rows = await leaseAndAck(consumer, view);
        delivered.push(...rows.map((row) => Number(row.offset)));
        leasesWhileWriting++;
        if (rows.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      deliveredWhileWriting = delivered.length;
    }
    stop = true;
    await Promise.all(work);
    // Every transaction has ended: the consumer drains the view, counted in leases (each delivers at least one
    // event until none is left; the bound only keeps a broken frontier from looping for ever).
    let drainLeases = 0;
    if (registered) {
      for (; drainLeases < 1000; drainLeases++) {
        const rows = await leaseAndAck(consumer, view);
        delivered.push(...rows.map((row) => Number(row.offset)));
        if (rows.length === 0) break;
      }
    }
    const [{ passed } = { passed: -1 }] = await consumer<{ passed: number }[]>`
      SELECT advance_view(${view}) AS passed`;
    const missed = await streamsBehind(view);
    const unacknowledged = await db.sql<{ decider_id: string }[]>`
      SELECT decider_id FROM locks WHERE view = ${view} AND last_offset < "offset"`;
    const log = await db.sql<
      { offset: string }[]
    >`SELECT "offset"::text AS "offset" FROM events ORDER BY events."offset"`;
    const [{ views } = { views: 0 }] = await db.sql<{ views: number }[]>`
      SELECT count(*)::int AS views FROM views WHERE view = ${view}`;
    await Promise.all([...writers, ...registrars, consumer].map((c) => c.end({ timeout: 1 })));
    return {
      missed,
      unacknowledged,
      views,
      passedAfterDrain: passed,
      drainLeases,
      log: log.map((row) => Number(row.offset)),
      delivered,
      deliveredWhileWriting,
      appended: appended.length,
      registered,
      registrationMs,
      commitsDuringRegistration,
    };
  }

  test('under load: two registrations of one view while eight writers append finish, and a consumer leasing all along leaves no stream behind', async () => {
    const starvationBound = 8 * 25;
    const result = await registerDuringAppends({ holdMs: 20, writers: 8, starvationBound });
    console.log(
      `registrations: ${result.registrationMs} ms, ${result.commitsDuringRegistration} writer transactions meanwhile; ${result.appended} new streams, ${result.deliveredWhileWriting} events delivered while writing, ${result.delivered.length - result.deliveredWhileWriting} in ${result.drainLeases} leases after; ${result.missed.length} streams left behind`,
    );
    // Two new streams per writer before the registrations, one after (at least): counted, not hoped for.
    expect(result.appended).toBeGreaterThan(20);
    expect(
      result.registered,
      `the registrations did not finish while the writers committed ${result.commitsDuringRegistration} transactions (${result.registrationMs} ms)`,
    ).toBe(true);
    expect(result.views).toBe(1);
    // The consumer got events while appends were in flight, not only once they had stopped.
    expect(result.deliveredWhileWriting).toBeGreaterThan(0);
    expect(result.passedAfterDrain).toBe(0);
    expect(
      result.missed,
      `${result.missed.length} streams have no lock row for the view, or one behind their head`,
    ).toEqual([]);
    expect(result.unacknowledged).toEqual([]);
    // Every event of the log delivered, exactly once.
    expect([...result.delivered].sort((a, b) => a - b)).toEqual(result.log);
  });
});
