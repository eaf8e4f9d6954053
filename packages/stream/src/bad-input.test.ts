/**
 * The bad-input catalogue of @fstore/stream's wrappers and projection options. The wrappers pass their input to the
 * SQL functions as it is: a lease that is no longer held comes back as LeaseLostError, everything else as the
 * database error, with the SQLSTATE that @fstore/schema's bad-input test lists (22023 for the functions' own checks,
 * 22P02 and 22003 for values that are not of the parameter's type or range, 22008 for delays beyond any timestamp,
 * 23502 and 23514 for the tables' constraints, P0002 for nothing to act on). Each is refused with nothing written
 * and the connection still usable.
 *
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { databaseError } from '@fstore/store/internal';
import { createTestDatabase } from '@fstore/test-harness';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { LeaseLostError } from './errors.js';
import {
  ackEvent,
  ackEvents,
  ackLeases,
  discardParkedEvent,
  failEvent,
  leaseEvents,
  nackEvent,
  registerView,
  releaseLease,
  renewLease,
  resetView,
  retryParkedEvent,
  scheduleNackEvent,
  setWakeups,
  streamEvents,
} from './functions.js';
import { createProjection } from './projection.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
/** One connection: every failure must leave it usable. */
const db = drizzle(database.connect({ max: 1 }));

const tasks = defineEvents('Task', { TaskAdded: event<{ title: string }>(), TaskDone: event<object>() });
const store = createEventStore(db, tasks);

const fixture = {
  view: `view-${randomUUID()}`,
  stream: '',
  other: '',
  offsets: [] as number[],
  otherOffset: 0,
  lease: '',
};

async function appendStream(id: string, count: number) {
  const stored = await store.append(
    id,
    Array.from({ length: count }, (_, i) =>
      i === 0
        ? { type: 'TaskAdded' as const, data: { title: 't' } }
        : { type: 'TaskDone' as const, data: {} },
    ),
    { expectedLastEventId: null },
  );
  return stored.map((e) => e.offset);
}

beforeAll(async () => {
  await store.register();
  fixture.stream = `task-${randomUUID()}`;
  fixture.other = `task-${randomUUID()}`;
  fixture.offsets = await appendStream(fixture.stream, 3);
  [fixture.otherOffset] = (await appendStream(fixture.other, 1)) as [number];
  await registerView(db, fixture.view, { startAt: new Date(0) });
  const leased = await leaseEvents(db, fixture.view, { streams: 100, eventsPerStream: 1, leaseSeconds: 300 });
  fixture.lease = leased.find((row) => row.deciderId === fixture.stream)?.leaseId as string;
});

/** What views, locks and parked_events hold, as digests (read on another connection). */
async function contents() {
  const [row] = await database.sql`
    SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view), '')) FROM views t) AS views,
           (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view, t.decider_id), '')) FROM locks t) AS locks,
           (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view, t."offset"), '')) FROM parked_events t) AS parked,
           (SELECT count(*)::int FROM events) AS events,
           (SELECT count(*)::int FROM pg_trigger WHERE tgname = 't_notify_events_appended') AS wakeups`;
  return row;
}

async function usable() {
  expect(await db.execute(sql`SELECT 1 AS ok`)).toEqual([{ ok: 1 }]);
}

/** Runs `fn`, expects it to fail, nothing written, the connection usable; returns the error. */
async function refused(fn: () => Promise<unknown>): Promise<unknown> {
  const before = await contents();
  const error = await fn().then(
    () => undefined,
    (e: unknown) => e ?? new Error('rejected with nothing'),
  );
  expect(error, 'it failed').toBeDefined();
  expect(await contents(), 'nothing written').toEqual(before);
  await usable();
  return error;
}

const lease = () => ({ view: fixture.view, deciderId: fixture.stream, leaseId: fixture.lease });
const stale = () => ({ ...lease(), leaseId: randomUUID() });
const first = () => fixture.offsets[0] as number;

describe('the wrappers refuse bad input through the SQL: clear SQLSTATE, nothing written, the connection usable', () => {
  const cases: [string, () => Promise<unknown>, string][] = [
    ['registerView: a null name', () => registerView(db, null as unknown as string), '23502'],
    [
      'registerView: a lease length of 0 seconds',
      () => registerView(db, `v-${randomUUID()}`, { leaseSeconds: 0 }),
      '23514',
    ],
    [
      'registerView: a negative lease length',
      () => registerView(db, `v-${randomUUID()}`, { leaseSeconds: -5 }),
      '23514',
    ],
    [
      'registerView: a fractional lease length',
      () => registerView(db, `v-${randomUUID()}`, { leaseSeconds: 1.5 }),
      '22P02',
    ],
    [
      'registerView: NaN seconds',
      () => registerView(db, `v-${randomUUID()}`, { leaseSeconds: Number.NaN }),
      '22P02',
    ],
    [
      'registerView: a negative polling delay',
      () => registerView(db, `v-${randomUUID()}`, { pollIntervalMs: -1 }),
      '23514',
    ],
    [
      'registerView: an infinite polling delay',
      () => registerView(db, `v-${randomUUID()}`, { pollIntervalMs: Infinity }),
      '22P02',
    ],
    ['streamEvents: a negative limit', () => streamEvents(db, fixture.view, -1), '22023'],
    ['streamEvents: 0 lease seconds', () => streamEvents(db, fixture.view, 1, 0), '22023'],
    ['streamEvents: a limit beyond int', () => streamEvents(db, fixture.view, 2 ** 31), '22003'],
    ['streamEvents: a fractional limit', () => streamEvents(db, fixture.view, 1.5), '22P02'],
    [
      'leaseEvents: a negative stream count',
      () => leaseEvents(db, fixture.view, { streams: -1, eventsPerStream: 1, leaseSeconds: 5 }),
      '22023',
    ],
    [
      'leaseEvents: 0 events per stream',
      () => leaseEvents(db, fixture.view, { streams: 1, eventsPerStream: 0, leaseSeconds: 5 }),
      '22023',
    ],
    [
      'leaseEvents: 0 lease seconds',
      () => leaseEvents(db, fixture.view, { streams: 1, eventsPerStream: 1, leaseSeconds: 0 }),
      '22023',
    ],
    [
      'leaseEvents: lease seconds beyond int',
      () => leaseEvents(db, fixture.view, { streams: 1, eventsPerStream: 1, leaseSeconds: 2 ** 31 }),
      '22003',
    ],
    [
      'leaseEvents: NaN streams',
      () => leaseEvents(db, fixture.view, { streams: Number.NaN, eventsPerStream: 1, leaseSeconds: 5 }),
      '22P02',
    ],
    [
      'ackEvent: an offset of no event',
      () => ackEvent(db, fixture.view, fixture.stream, 999_999_999),
      '22023',
    ],
    [
      "ackEvent: an offset of another stream's event",
      () => ackEvent(db, fixture.view, fixture.stream, fixture.otherOffset),
      '22023',
    ],
    [
      'scheduleNackEvent: a negative delay',
      () => scheduleNackEvent(db, fixture.view, fixture.stream, -1),
      '22023',
    ],
    [
      'scheduleNackEvent: 10^16 ms, beyond any timestamp',
      () => scheduleNackEvent(db, fixture.view, fixture.stream, 1e16),
      '22008',
    ],
    ['ackEvents: an offset of no event', () => ackEvents(db, lease(), 999_999_999), '22023'],
    [
      "ackEvents: an offset of another stream's event",
      () => ackEvents(db, lease(), fixture.otherOffset),
      '22023',
    ],
    [
      'ackEvents: a token that is no UUID',
      () => ackEvents(db, { ...lease(), leaseId: 'nope' }, first()),
      '22P02',
    ],
    ['ackEvents: a NaN offset', () => ackEvents(db, lease(), Number.NaN), '22P02'],
    ['renewLease: 0 seconds', () => renewLease(db, lease(), 0), '22023'],
    ['renewLease: seconds beyond int', () => renewLease(db, lease(), 2 ** 31), '22003'],
    ['releaseLease: a negative delay', () => releaseLease(db, lease(), -1), '22023'],
    ['releaseLease: 10^16 ms, beyond any timestamp', () => releaseLease(db, lease(), 1e16), '22008'],
    [
      'failEvent: a negative retry delay',
      () =>
        failEvent(db, lease(), {
          offset: first(),
          error: 'e',
          retryMs: -1,
          maxAttempts: 3,
          stopStream: false,
        }),
      '22023',
    ],
    [
      'failEvent: NaN attempts',
      () =>
        failEvent(db, lease(), {
          offset: first(),
          error: 'e',
          retryMs: 0,
          maxAttempts: Number.NaN,
          stopStream: false,
        }),
      '22P02',
    ],
    [
      "failEvent: an offset of another stream's event",
      () =>
        failEvent(db, lease(), {
          offset: fixture.otherOffset,
          error: 'e',
          retryMs: 0,
          maxAttempts: 3,
          stopStream: false,
        }),
      '22023',
    ],
    ['retryParkedEvent: nothing parked there', () => retryParkedEvent(db, fixture.view, first()), 'P0002'],
    [
      'discardParkedEvent: nothing parked there',
      () => discardParkedEvent(db, fixture.view, first()),
      'P0002',
    ],
    [
      'resetView: a view that does not exist',
      () => resetView(db, `no-such-${randomUUID()}`, new Date(0)),
      'P0002',
    ],
    ['setWakeups: a null flag', () => setWakeups(db, null as unknown as boolean), '22023'],
    [
      'ackLeases: a token that is no UUID',
      () =>
        ackLeases(db, fixture.view, [
          { deciderId: fixture.stream, leaseId: fixture.lease, offset: first() },
          { deciderId: 'a', leaseId: 'nope', offset: 1 },
        ]),
      '22P02',
    ],
  ] as [string, () => Promise<unknown>, string][];
  const rows = cases.map(([label, fn, code]) => [label, code, fn] as const);

  test.each(rows)('%s: %s', async (_, code, fn) => {
    const error = await refused(fn);
    expect(databaseError(error)?.code, String(error)).toBe(code);
  });

  test('a lease that is not held is a LeaseLostError from ackEvents, failEvent and ackLeases; renewLease and releaseLease answer false', async () => {
    for (const fn of [
      () => ackEvents(db, stale(), first()),
      () =>
        failEvent(db, stale(), {
          offset: first(),
          error: 'e',
          retryMs: 0,
          maxAttempts: 3,
          stopStream: false,
        }),
      () =>
        ackLeases(db, fixture.view, [{ deciderId: fixture.stream, leaseId: randomUUID(), offset: first() }]),
    ]) {
      expect(await refused(fn)).toBeInstanceOf(LeaseLostError);
    }
    const before = await contents();
    expect(await renewLease(db, stale(), 60)).toBe(false);
    expect(await releaseLease(db, stale())).toBe(false);
    expect(await contents()).toEqual(before);
  });

  test('dates that are no dates are refused before any SQL (RangeError), nothing written', async () => {
    for (const fn of [
      () => registerView(db, `v-${randomUUID()}`, { startAt: new Date('not a date') }),
      () => resetView(db, fixture.view, new Date(Number.NaN)),
    ]) {
      expect(await refused(fn)).toBeInstanceOf(RangeError);
    }
  });

  test('the largest safe integer of milliseconds (285,000 years) is accepted: the stream is held until a year JavaScript cannot show', async () => {
    const view = `view-${randomUUID()}`;
    await registerView(db, view, { startAt: new Date(0) });
    // schedule_nack_event does not advance the view (lease_events, stream_events and ack_event do): create the rows.
    await database.sql`SELECT advance_view(${view})`;
    const [held] = await scheduleNackEvent(db, view, fixture.stream, Number.MAX_SAFE_INTEGER);
    // Beyond JavaScript's last date (year 275760): the decoded lock says Invalid Date.
    expect(Number.isNaN(held?.lockedUntil.getTime())).toBe(true);
    const [row] = await database.sql`
      SELECT extract(year FROM locked_until)::int AS year FROM locks WHERE view = ${view} AND decider_id = ${fixture.stream}`;
    expect(row?.year).toBeGreaterThan(280_000);
  });

  test("fstore-sql's ackEvent and nackEvent answer an unknown view with no row, not an error; nothing changes", async () => {
    const before = await contents();
    expect(await ackEvent(db, `no-such-${randomUUID()}`, fixture.stream, first())).toEqual([]);
    expect(await nackEvent(db, `no-such-${randomUUID()}`, fixture.stream)).toEqual([]);
    expect(await contents()).toEqual(before);
  });
});

describe('acknowledgements that come late', () => {
  test('a worker whose lease expired and was taken over gets LeaseLostError; the position and the new lease stay', async () => {
    const view = `view-${randomUUID()}`;
    const id = `task-${randomUUID()}`;
    await registerView(db, view, { startAt: new Date(0) });
    const offsets = await appendStream(id, 2);
    const [a] = await leaseEvents(db, view, { streams: 100, eventsPerStream: 1, leaseSeconds: 300 }).then(
      (rows) => rows.filter((row) => row.deciderId === id),
    );
    await database.sql`UPDATE locks SET locked_until = now() - interval '1 second' WHERE view = ${view} AND decider_id = ${id}`;
    const [b] = await leaseEvents(db, view, { streams: 100, eventsPerStream: 2, leaseSeconds: 300 }).then(
      (rows) => rows.filter((row) => row.deciderId === id),
    );
    expect(b?.leaseId).not.toBe(a?.leaseId);
    const late = await refused(() =>
      ackEvents(db, { view, deciderId: id, leaseId: a?.leaseId as string }, offsets[0] as number),
    );
    expect(late).toBeInstanceOf(LeaseLostError);
    const acked = await ackEvents(
      db,
      { view, deciderId: id, leaseId: b?.leaseId as string },
      offsets[1] as number,
    );
    expect(acked.lastOffset).toBe(offsets[1]);
  });
});

describe('names: quotes, separators, control characters, unicode', () => {
  const names = [
    `'); DROP TABLE locks; --`,
    `a"b`,
    `a\\b`,
    `comma,and{braces}`,
    `NULL`,
    `Ünïcödé ✓ 🦀`,
    `tab\there`,
    `new\nline`,
  ];

  test.each(names)(
    '%j as a view and a stream: registered, leased and acknowledged verbatim (ackEvents)',
    async (name) => {
      const view = `${name}-${randomUUID()}`;
      const id = `${name}-${randomUUID()}`;
      await registerView(db, view, { startAt: new Date(0) });
      const [offset] = await appendStream(id, 1);
      const [row] = (
        await leaseEvents(db, view, { streams: 1000, eventsPerStream: 1, leaseSeconds: 30 })
      ).filter((r) => r.deciderId === id);
      const acked = await ackEvents(
        db,
        { view, deciderId: id, leaseId: row?.leaseId as string },
        offset as number,
      );
      expect(acked).toMatchObject({ view, deciderId: id, lastOffset: offset });
    },
  );

  async function ackLeasesOf(name: string) {
    const view = `view-${randomUUID()}`;
    const id = `${name}-${randomUUID()}`;
    await registerView(db, view, { startAt: new Date(0) });
    const [offset] = await appendStream(id, 1);
    const [row] = (
      await leaseEvents(db, view, { streams: 1000, eventsPerStream: 1, leaseSeconds: 30 })
    ).filter((r) => r.deciderId === id);
    return ackLeases(db, view, [
      { deciderId: id, leaseId: row?.leaseId as string, offset: offset as number },
    ]);
  }

  test.each(names)('%j as a stream: ackLeases acknowledges it', async (name) => {
    expect(await ackLeasesOf(name)).toBe(1);
  });
});

describe('projection options', () => {
  const base = { db, view: `view-${randomUUID()}`, events: [tasks] as const, handle: () => {} };

  test('nonsense options are refused when the worker is made', () => {
    // concurrency 0: the poll loop waits on an empty race for ever; batchSize or leaseSeconds 0: every lease is
    // refused (22023) and only logged; NaN attempts: a failing event is retried for ever.
    for (const options of [
      { concurrency: 0 },
      { batchSize: 0 },
      { leaseSeconds: 0 },
      { leaseSeconds: -1 },
      { maxAttempts: Number.NaN },
      { pollIntervalMs: -1 },
    ]) {
      expect(() => createProjection({ ...base, ...options }), JSON.stringify(options)).toThrow();
    }
  });
});
