/**
 * The specification of the SQL that projection workers use (migration 0004): batch leases with tokens,
 * acknowledgements only the lease's holder can make, renewal and release, failures with backoff and parked events,
 * rebuilds, status figures and NOTIFY wake-ups. It runs on a real PostgreSQL through postgres.js
 * (projection-sql.test.ts) and in process on PGlite (projection-sql.pglite.test.ts).
 *
 * All tests of a file share one database. Each test registers a view of its own with start_at = now, so the view
 * reads only the streams the test creates after it (older streams of other tests are caught up for it); tests of
 * one file run one after the other, so no other test's stream shows up in a view while its test runs.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { failureOf, type Row, type SqlClient } from './sql-client.js';

/** What a driver can do beyond one statement at a time. The tests that need a capability run only with it. */
export interface ProjectionSqlCapabilities {
  /** Runs `fn` in one transaction: commits when it resolves, rolls back (and rejects) when it throws. */
  transaction?: <T>(fn: (tx: SqlClient) => Promise<T>) => Promise<T>;
  /** LISTENs on `channel` until the returned function is called; resolves once listening. */
  listen?: (channel: string, onNotify: (payload: string) => void) => Promise<() => Promise<void>>;
}

interface EventRow extends Row {
  event: string;
  event_id: string;
  decider: string;
  decider_id: string;
  data: unknown;
  created_at: Date;
  offset: number;
}

interface LeasedRow extends EventRow {
  lease_id: string;
  attempts: number;
}

interface LockState extends Row {
  view: string;
  decider_id: string;
  offset: number;
  last_offset: number;
  lease_id: string | null;
  attempts: number;
  last_error: string | null;
  /** locked_until <= now(): lease_events may take the stream (if it has unread events). */
  free: boolean;
  /** locked_until = 'infinity': the stream stopped at a parked event. */
  stopped: boolean;
  /** Seconds from now to locked_until (negative once it passed); null when stopped. */
  seconds_left: number | null;
}

interface ParkedRow extends Row {
  view: string;
  decider_id: string;
  offset: number;
  event_id: string;
  error: string;
  attempts: number;
  stream_stopped: boolean;
  parked_at: Date;
  retry_requested_at: Date | null;
}

interface StatusRow extends Row {
  view: string;
  streams: number;
  pending_streams: number;
  leased_streams: number;
  stopped_streams: number;
  events_behind: number;
  oldest_unacked_at: Date | null;
  parked_events: number;
}

interface Stream {
  deciderId: string;
  events: EventRow[];
}

const LEASE_LOST = { code: '55P03', constraint: 'locks_lease_held' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A delay the database starts counting during the next call: what a check may expect, judged by the time that has
 * passed since before that call, so that a slow machine changes how much is checked, never the verdict.
 */
function delayFromNow(ms: number) {
  const before = performance.now();
  const elapsed = () => performance.now() - before;
  return {
    ms,
    /** The least the lock can have left now (the call began after `before`); 50 ms for the two clocks. */
    secondsLeftAtLeast: () => (ms - elapsed()) / 1000 - 0.05,
    /** True while the delay certainly runs: a statement that has returned by now began before it ended. */
    running: () => elapsed() < ms,
    remainingMs: () => Math.max(0, ms - elapsed()),
  };
}

export function describeProjectionSql(
  driver: string,
  connect: () => Promise<SqlClient>,
  capabilities: ProjectionSqlCapabilities = {},
) {
  describe(`projection workers' SQL (${driver})`, () => {
    let db: SqlClient;
    beforeAll(async () => {
      db = await connect();
    });

    // --- Fixtures -------------------------------------------------------------------------------------------

    async function newDecider(): Promise<string> {
      const decider = `decider-${randomUUID()}`;
      await db.query(`SELECT * FROM register_decider_event($1, 'e1')`, [decider]);
      return decider;
    }

    async function appendTo(decider: string, stream: Stream, client: SqlClient = db): Promise<EventRow> {
      const [event] = await client.query<EventRow>(
        `SELECT * FROM append_event('e1', $1, $2, $3, $4::text::jsonb, $5, $6)`,
        [
          randomUUID(),
          decider,
          stream.deciderId,
          JSON.stringify({ n: stream.events.length }),
          randomUUID(),
          stream.events.at(-1)?.event_id ?? null,
        ],
      );
      if (!event) throw new Error('append_event returned nothing');
      stream.events.push(event);
      return event;
    }

    const newStream = (): Stream => ({ deciderId: `stream-${randomUUID()}`, events: [] });

    async function newView(): Promise<string> {
      const view = `view-${randomUUID()}`;
      await db.query(`SELECT * FROM register_view($1)`, [view]);
      return view;
    }

    /**
     * A fresh view, then `count` fresh streams of `eventsEach` events, appended round-robin (s0e0, s1e0, s2e0,
     * s0e1, ...) so that offset order interleaves the streams. Streams are created in index order, so
     * lease_events (least recently served first) takes them in index order too.
     */
    async function viewWithStreams(count: number, eventsEach: number) {
      const view = await newView();
      const decider = await newDecider();
      const streams = Array.from({ length: count }, newStream);
      for (let i = 0; i < eventsEach; i++) {
        for (const stream of streams) await appendTo(decider, stream);
      }
      return { view, decider, streams };
    }

    /** viewWithStreams(1, eventsEach), for the many tests about one stream. */
    async function viewWithStream(eventsEach: number) {
      const { view, decider, streams } = await viewWithStreams(1, eventsEach);
      return { view, decider, stream: streams[0] as Stream };
    }

    const lease = (view: string, streams = 10, eventsPerStream = 100, lockSeconds = 300) =>
      db.query<LeasedRow>(`SELECT * FROM lease_events($1, $2::int, $3::int, $4::int)`, [
        view,
        streams,
        eventsPerStream,
        lockSeconds,
      ]);

    /** Leases a view's only pending stream and returns its token and rows. */
    async function leaseOne(view: string, eventsPerStream = 100, lockSeconds = 300) {
      const rows = await lease(view, 1, eventsPerStream, lockSeconds);
      const token = rows[0]?.lease_id;
      if (!token) throw new Error(`nothing to lease in ${view}`);
      return { token, rows };
    }

    const ack = (view: string, deciderId: string, token: string, offset: number | undefined, client = db) =>
      client.query<LockState>(`SELECT * FROM ack_events($1, $2, $3, $4)`, [view, deciderId, token, offset]);

    const fail = (
      view: string,
      deciderId: string,
      token: string,
      offset: number | undefined,
      options: { error?: string | null; retryMs?: number; maxAttempts?: number; stop?: boolean } = {},
    ) =>
      db
        .query<{ outcome: string }>(
          `SELECT fail_event($1, $2, $3, $4, $5, $6::bigint, $7::int, $8::boolean) AS outcome`,
          [
            view,
            deciderId,
            token,
            offset,
            options.error === undefined ? 'boom' : options.error,
            options.retryMs ?? 0,
            options.maxAttempts ?? 3,
            options.stop ?? false,
          ],
        )
        .then(([row]) => row?.outcome);

    const renew = (view: string, deciderId: string, token: string, seconds: number) =>
      db
        .query<{ held: boolean }>(`SELECT renew_lease($1, $2, $3, $4::int) AS held`, [
          view,
          deciderId,
          token,
          seconds,
        ])
        .then(([row]) => row?.held);

    const release = (view: string, deciderId: string, token: string, delayMs?: number) =>
      db
        .query<{ held: boolean }>(
          delayMs === undefined
            ? `SELECT release_lease($1, $2, $3) AS held`
            : `SELECT release_lease($1, $2, $3, $4::bigint) AS held`,
          delayMs === undefined ? [view, deciderId, token] : [view, deciderId, token, delayMs],
        )
        .then(([row]) => row?.held);

    /** The view's lock row of the stream, once the view has read the log (as the next consumer to ask would). */
    async function lockOf(view: string, deciderId: string): Promise<LockState> {
      await db.query(`SELECT advance_view($1)`, [view]);
      const [lock] = await db.query<LockState>(
        `SELECT view, decider_id, "offset", last_offset, lease_id, attempts, last_error,
                locked_until <= now() AS free,
                locked_until = 'infinity' AS stopped,
                CASE WHEN locked_until = 'infinity' THEN NULL
                     ELSE extract(epoch FROM locked_until - now())::float8 END AS seconds_left
         FROM locks WHERE view = $1 AND decider_id = $2`,
        [view, deciderId],
      );
      if (!lock) throw new Error(`no lock for ${deciderId} in ${view}`);
      return lock;
    }

    const parked = (view: string | null) =>
      db.query<ParkedRow>(`SELECT * FROM list_parked_events($1)`, [view]);

    async function statusOf(view: string): Promise<StatusRow | undefined> {
      const rows = await db.query<StatusRow>(
        `SELECT view, streams::int, pending_streams::int, leased_streams::int, stopped_streams::int,
                events_behind::int, oldest_unacked_at, parked_events::int
         FROM view_status() WHERE view = $1`,
        [view],
      );
      expect(rows).toHaveLength(1);
      return rows[0];
    }

    const offsets = (rows: { offset: number }[]) => rows.map((r) => r.offset);
    const ids = (rows: { event_id: string }[]) => rows.map((r) => r.event_id);

    // --- lease_events ---------------------------------------------------------------------------------------

    describe('lease_events', () => {
      test('returns up to N events of each of up to M streams, all in offset order', async () => {
        const { view, streams } = await viewWithStreams(3, 3);
        const [s0, s1] = streams as [Stream, Stream, Stream];
        const rows = await lease(view, 2, 2);
        // Round-robin appends interleave the streams: s0e0 < s1e0 < s0e1 < s1e1.
        expect(ids(rows)).toEqual(
          ids([s0.events[0], s1.events[0], s0.events[1], s1.events[1]] as EventRow[]),
        );
        expect(offsets(rows)).toEqual([...offsets(rows)].sort((a, b) => a - b));
        expect(rows[0]).toMatchObject({
          event: 'e1',
          decider_id: s0.deciderId,
          data: { n: 0 },
          offset: s0.events[0]?.offset,
          attempts: 0,
        });
        expect(rows[0]?.created_at).toBeInstanceOf(Date);
      });

      test("every row carries its stream's token: one per stream, distinct across streams, kept in locks", async () => {
        const { view, streams } = await viewWithStreams(3, 2);
        const rows = await lease(view);
        expect(rows).toHaveLength(6);
        const tokens = new Map<string, Set<string>>();
        for (const row of rows) {
          expect(row.lease_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
          tokens.set(row.decider_id, (tokens.get(row.decider_id) ?? new Set()).add(row.lease_id));
        }
        expect([...tokens.values()].map((set) => set.size)).toEqual([1, 1, 1]);
        const distinct = new Set([...tokens.values()].flatMap((set) => [...set]));
        expect(distinct.size).toBe(3);
        for (const stream of streams) {
          const lock = await lockOf(view, stream.deciderId);
          expect(lock.lease_id).toBe([...(tokens.get(stream.deciderId) ?? [])][0]);
          expect(lock.free).toBe(false);
          expect(lock.seconds_left).toBeGreaterThan(290);
          expect(lock.last_offset).toBe(0);
        }
      });

      test('reads from the first unread event, and the defaults take 10 streams, 100 events each', async () => {
        const { view, stream } = await viewWithStream(3);
        const { token } = await leaseOne(view);
        await ack(view, stream.deciderId, token, stream.events[0]?.offset);
        const rows = await db.query<LeasedRow>(`SELECT * FROM lease_events($1)`, [view]);
        expect(ids(rows)).toEqual(ids(stream.events.slice(1)));

        const many = await viewWithStreams(12, 1);
        expect(await db.query(`SELECT * FROM lease_events($1)`, [many.view])).toHaveLength(10);
        const long = await viewWithStream(101);
        expect(await db.query(`SELECT * FROM lease_events($1)`, [long.view])).toHaveLength(100);
      });

      test('takes the least recently served streams first', async () => {
        const { view, streams } = await viewWithStreams(3, 2);
        const [s0, s1, s2] = streams as [Stream, Stream, Stream];
        const first = await lease(view, 1, 1);
        expect(first.map((r) => r.decider_id)).toEqual([s0.deciderId]);
        await ack(view, s0.deciderId, first[0]?.lease_id ?? '', s0.events[0]?.offset);
        // s0 was served last: s1 and s2 come before it.
        const next = await lease(view, 2, 1);
        expect(next.map((r) => r.decider_id)).toEqual([s1.deciderId, s2.deciderId]);
      });

      test('a leased stream is not leased again while its lease lasts; once it expires it is, with a new token', async () => {
        const { view, streams } = await viewWithStreams(2, 2);
        const [s0, s1] = streams as [Stream, Stream];
        const first = await lease(view, 1, 100, 1);
        expect(first.map((r) => r.decider_id)).toEqual([s0.deciderId, s0.deciderId]);
        const second = await lease(view, 10, 100, 1);
        expect(ids(second)).toEqual(ids(s1.events));
        expect(await lease(view)).toEqual([]);
        await sleep(1100);
        const again = await lease(view);
        expect(ids(again)).toEqual(
          ids([s0.events[0], s1.events[0], s0.events[1], s1.events[1]] as EventRow[]),
        );
        const newTokens = new Set(again.map((r) => r.lease_id));
        expect(newTokens.has(first[0]?.lease_id ?? '')).toBe(false);
        expect(newTokens.has(second[0]?.lease_id ?? '')).toBe(false);
        // An expired lease is not a failure.
        expect(again.every((r) => r.attempts === 0)).toBe(true);
      });

      test('a caught-up view and zero streams lease nothing', async () => {
        const { view, stream } = await viewWithStream(1);
        expect(await lease(view, 0)).toEqual([]);
        expect((await lockOf(view, stream.deciderId)).free).toBe(true);
        const { token } = await leaseOne(view);
        await ack(view, stream.deciderId, token, stream.events[0]?.offset);
        expect(await lease(view)).toEqual([]);
      });

      test('a view that is not registered is refused with P0002, not leased from in silence', async () => {
        await expect(lease(`view-${randomUUID()}`)).rejects.toMatchObject({ code: 'P0002' });
      });

      test('refuses negative or null stream counts, fewer than one event per stream, and leases under a second', async () => {
        const { view, stream } = await viewWithStream(1);
        const bad: [number | null, number | null, number | null][] = [
          [-1, 1, 30],
          [null, 1, 30],
          [1, 0, 30],
          [1, null, 30],
          [1, 1, 0],
          [1, 1, null],
        ];
        for (const [streams, perStream, seconds] of bad) {
          const failure = await failureOf(() =>
            db.query(`SELECT * FROM lease_events($1, $2::int, $3::int, $4::int)`, [
              view,
              streams,
              perStream,
              seconds,
            ]),
          );
          expect(failure.code, `lease_events(${streams}, ${perStream}, ${seconds})`).toBe('22023');
        }
        // Nothing was leased by the refused calls.
        expect((await lockOf(view, stream.deciderId)).lease_id).toBeNull();
        expect(await lease(view)).toHaveLength(1);
      });
    });

    // --- ack_events -----------------------------------------------------------------------------------------

    describe('ack_events', () => {
      test('the holder moves the position to the offset, over several events, and releases the stream', async () => {
        const { view, stream } = await viewWithStream(3);
        const { token, rows } = await leaseOne(view);
        expect(rows).toHaveLength(3);
        const [lock] = await ack(view, stream.deciderId, token, stream.events[1]?.offset);
        expect(lock).toMatchObject({
          view,
          decider_id: stream.deciderId,
          last_offset: stream.events[1]?.offset,
          offset: stream.events[2]?.offset,
          lease_id: null,
          attempts: 0,
          last_error: null,
        });
        expect(await lockOf(view, stream.deciderId)).toMatchObject({ free: true, lease_id: null });
        // Released at once: the rest of the stream is leasable, under a new token.
        const next = await lease(view);
        expect(ids(next)).toEqual(ids(stream.events.slice(2)));
        expect(next[0]?.lease_id).not.toBe(token);
      });

      test('clears the failure count and error of the stream', async () => {
        const { view, stream } = await viewWithStream(2);
        const first = await leaseOne(view);
        expect(
          await fail(view, stream.deciderId, first.token, stream.events[0]?.offset, { error: 'no' }),
        ).toBe('retry');
        const second = await leaseOne(view);
        expect(second.rows.map((r) => r.attempts)).toEqual([1, 1]);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({ attempts: 1, last_error: 'no' });
        const [lock] = await ack(view, stream.deciderId, second.token, stream.events[0]?.offset);
        expect(lock).toMatchObject({ attempts: 0, last_error: null, last_offset: stream.events[0]?.offset });
        const third = await leaseOne(view);
        expect(third.rows.map((r) => [r.event_id, r.attempts])).toEqual([[stream.events[1]?.event_id, 0]]);
      });

      test('a wrong token is refused with 55P03 (locks_lease_held) and changes nothing', async () => {
        const { view, stream } = await viewWithStream(2);
        const { token } = await leaseOne(view);
        const before = await lockOf(view, stream.deciderId);
        const failure = await failureOf(() =>
          ack(view, stream.deciderId, randomUUID(), stream.events[1]?.offset),
        );
        expect(failure).toMatchObject(LEASE_LOST);
        expect(failure.message).toContain('is no longer held');
        const after = await lockOf(view, stream.deciderId);
        expect({ ...after, seconds_left: 0 }).toEqual({ ...before, seconds_left: 0 });
        expect(after.lease_id).toBe(token);
      });

      test('a token used once is stale: acknowledging with it again is refused', async () => {
        const { view, stream } = await viewWithStream(2);
        const { token } = await leaseOne(view);
        await ack(view, stream.deciderId, token, stream.events[0]?.offset);
        expect(
          await failureOf(() => ack(view, stream.deciderId, token, stream.events[1]?.offset)),
        ).toMatchObject(LEASE_LOST);
        expect((await lockOf(view, stream.deciderId)).last_offset).toBe(stream.events[0]?.offset);
      });

      test('a stream nobody leased cannot be acknowledged through ack_events', async () => {
        const { view, stream } = await viewWithStream(1);
        expect(
          await failureOf(() => ack(view, stream.deciderId, randomUUID(), stream.events[0]?.offset)),
        ).toMatchObject(LEASE_LOST);
        expect((await lockOf(view, stream.deciderId)).last_offset).toBe(0);
      });

      test('an offset that is not an event of the stream is refused with 22023, and the lease stays', async () => {
        const { view, streams } = await viewWithStreams(2, 1);
        const [s0, s1] = streams as [Stream, Stream];
        const { token } = await leaseOne(view);
        for (const offset of [s1.events[0]?.offset, 0, (s1.events[0]?.offset ?? 0) + 1_000_000]) {
          const failure = await failureOf(() => ack(view, s0.deciderId, token, offset));
          expect(failure.code).toBe('22023');
          expect(failure.message).toContain('is not an event of stream');
        }
        expect(await lockOf(view, s0.deciderId)).toMatchObject({
          lease_id: token,
          last_offset: 0,
          free: false,
        });
      });

      test('exactly once: a worker whose lease expired and was taken over cannot acknowledge; the new holder can', async () => {
        const { view, stream } = await viewWithStream(2);
        const last = stream.events[1]?.offset;
        const a = await leaseOne(view, 100, 1);
        await sleep(1100);
        const b = await leaseOne(view);
        expect(ids(b.rows)).toEqual(ids(a.rows));
        expect(b.token).not.toBe(a.token);
        // A comes back from its slow handler: everything it tries with its token is refused.
        expect(await failureOf(() => ack(view, stream.deciderId, a.token, last))).toMatchObject(LEASE_LOST);
        expect(await renew(view, stream.deciderId, a.token, 300)).toBe(false);
        expect(await release(view, stream.deciderId, a.token)).toBe(false);
        expect(
          await failureOf(() => fail(view, stream.deciderId, a.token, stream.events[0]?.offset)),
        ).toMatchObject(LEASE_LOST);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          lease_id: b.token,
          last_offset: 0,
          attempts: 0,
        });
        const [lock] = await ack(view, stream.deciderId, b.token, last);
        expect(lock).toMatchObject({ last_offset: last, lease_id: null });
      });

      test('an expired lease that nobody took over can still be acknowledged by its holder', async () => {
        const { view, stream } = await viewWithStream(1);
        const { token } = await leaseOne(view, 100, 1);
        await sleep(1100);
        const [lock] = await ack(view, stream.deciderId, token, stream.events[0]?.offset);
        expect(lock).toMatchObject({ last_offset: stream.events[0]?.offset, lease_id: null });
      });

      test('the position never moves backwards', async () => {
        const { view, stream } = await viewWithStream(3);
        const first = await leaseOne(view, 2);
        await ack(view, stream.deciderId, first.token, stream.events[1]?.offset);
        const second = await leaseOne(view);
        const [lock] = await ack(view, stream.deciderId, second.token, stream.events[0]?.offset);
        expect(lock?.last_offset).toBe(stream.events[1]?.offset);
      });

      test('with v_release false the holder keeps the lease: part of a batch is acknowledged, the rest failed', async () => {
        const { view, stream } = await viewWithStream(3);
        const { token } = await leaseOne(view);
        const [lock] = await db.query<LockState>(`SELECT * FROM ack_events($1, $2, $3, $4, false)`, [
          view,
          stream.deciderId,
          token,
          stream.events[0]?.offset,
        ]);
        expect(lock).toMatchObject({ last_offset: stream.events[0]?.offset, lease_id: token });
        expect(await lockOf(view, stream.deciderId)).toMatchObject({ free: false, lease_id: token });
        expect(await lease(view)).toEqual([]);
        // Still the holder: it reports the next event as failed, and the stream resumes at that event.
        expect(await fail(view, stream.deciderId, token, stream.events[1]?.offset)).toBe('retry');
        expect(ids(await lease(view))).toEqual(ids(stream.events.slice(1)));
      });
    });

    // --- renew_lease and release_lease ---------------------------------------------------------------------

    describe('renew_lease', () => {
      test('the holder extends the lease from now, keeps its token, and can still acknowledge', async () => {
        const { view, stream } = await viewWithStream(1);
        const { token } = await leaseOne(view, 100, 1);
        expect((await lockOf(view, stream.deciderId)).seconds_left).toBeLessThanOrEqual(1);
        expect(await renew(view, stream.deciderId, token, 600)).toBe(true);
        const lock = await lockOf(view, stream.deciderId);
        expect(lock.lease_id).toBe(token);
        expect(lock.seconds_left).toBeGreaterThan(590);
        expect(lock.seconds_left).toBeLessThanOrEqual(600);
        // Past the original second, the stream is still held.
        await sleep(1100);
        expect(await lease(view)).toEqual([]);
        expect(await ack(view, stream.deciderId, token, stream.events[0]?.offset)).toHaveLength(1);
      });

      test('a stale token gets false and the current lease is untouched', async () => {
        const { view, stream } = await viewWithStream(1);
        const first = await leaseOne(view);
        await release(view, stream.deciderId, first.token);
        const second = await leaseOne(view, 100, 60);
        expect(await renew(view, stream.deciderId, first.token, 3600)).toBe(false);
        expect(await renew(view, stream.deciderId, randomUUID(), 3600)).toBe(false);
        const lock = await lockOf(view, stream.deciderId);
        expect(lock.lease_id).toBe(second.token);
        expect(lock.seconds_left).toBeLessThanOrEqual(60);
      });
    });

    describe('release_lease', () => {
      test('the holder gives the stream back at once, unacknowledged; its token is then stale', async () => {
        const { view, stream } = await viewWithStream(2);
        const { token, rows } = await leaseOne(view);
        expect(await release(view, stream.deciderId, token)).toBe(true);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          lease_id: null,
          free: true,
          last_offset: 0,
          attempts: 0,
        });
        const again = await leaseOne(view);
        expect(ids(again.rows)).toEqual(ids(rows));
        expect(again.rows.every((r) => r.attempts === 0)).toBe(true);
        expect(
          await failureOf(() => ack(view, stream.deciderId, token, stream.events[1]?.offset)),
        ).toMatchObject(LEASE_LOST);
      });

      test('with a delay, the stream is not leasable before it and is after it', async () => {
        const { view, stream } = await viewWithStream(1);
        const { token } = await leaseOne(view);
        const delay = delayFromNow(800);
        expect(await release(view, stream.deciderId, token, delay.ms)).toBe(true);
        const lock = await lockOf(view, stream.deciderId);
        expect(lock.lease_id).toBeNull();
        expect(lock.seconds_left).toBeLessThanOrEqual(0.8);
        expect(lock.seconds_left).toBeGreaterThan(delay.secondsLeftAtLeast());
        const early = await lease(view);
        if (delay.running()) expect(early).toEqual([]);
        await sleep(delay.remainingMs() + 200);
        // On a machine too slow to look before the delay ended, the early lease took the stream.
        expect(ids(early.length > 0 ? early : await lease(view))).toEqual(ids(stream.events));
      });

      test('a stale token gets false and the current lease is untouched', async () => {
        const { view, stream } = await viewWithStream(1);
        const first = await leaseOne(view);
        await release(view, stream.deciderId, first.token);
        const second = await leaseOne(view);
        expect(await release(view, stream.deciderId, first.token)).toBe(false);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({ lease_id: second.token, free: false });
        expect(await lease(view)).toEqual([]);
      });
    });

    // --- fail_event ------------------------------------------------------------------------------------------

    describe('fail_event', () => {
      test("below the maximum: 'retry', the failure is counted and recorded, and the stream waits out the delay", async () => {
        const { view, stream } = await viewWithStream(2);
        const { token } = await leaseOne(view);
        const delay = delayFromNow(800);
        expect(
          await fail(view, stream.deciderId, token, stream.events[0]?.offset, {
            error: 'TypeError: x is undefined',
            retryMs: delay.ms,
            maxAttempts: 3,
          }),
        ).toBe('retry');
        const lock = await lockOf(view, stream.deciderId);
        expect(lock).toMatchObject({
          attempts: 1,
          last_error: 'TypeError: x is undefined',
          lease_id: null,
          last_offset: 0,
          free: false,
        });
        expect(lock.seconds_left).toBeLessThanOrEqual(0.8);
        expect(lock.seconds_left).toBeGreaterThan(delay.secondsLeftAtLeast());
        const early = await lease(view);
        if (delay.running()) expect(early).toEqual([]);
        expect(await parked(view)).toEqual([]);
        await sleep(delay.remainingMs() + 200);
        const again = early.length > 0 ? early : await lease(view);
        expect(ids(again)).toEqual(ids(stream.events));
        expect(again.map((r) => r.attempts)).toEqual([1, 1]);
      });

      test('failures accumulate across leases; the token is spent by the failure', async () => {
        const { view, stream } = await viewWithStream(1);
        const offset = stream.events[0]?.offset;
        const first = await leaseOne(view);
        expect(await fail(view, stream.deciderId, first.token, offset, { error: 'one' })).toBe('retry');
        expect(await failureOf(() => ack(view, stream.deciderId, first.token, offset))).toMatchObject(
          LEASE_LOST,
        );
        const second = await leaseOne(view);
        expect(await fail(view, stream.deciderId, second.token, offset, { error: 'two' })).toBe('retry');
        const third = await leaseOne(view);
        expect(third.rows[0]?.attempts).toBe(2);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({ attempts: 2, last_error: 'two' });
      });

      test("at the maximum: 'parked', the event is parked with its error, and the stream moves on", async () => {
        const { view, stream } = await viewWithStream(3);
        const [e0, e1] = stream.events as [EventRow, EventRow, EventRow];
        const first = await leaseOne(view);
        expect(
          await fail(view, stream.deciderId, first.token, e0.offset, { error: 'first', maxAttempts: 2 }),
        ).toBe('retry');
        const second = await leaseOne(view);
        expect(
          await fail(view, stream.deciderId, second.token, e0.offset, { error: 'second', maxAttempts: 2 }),
        ).toBe('parked');
        const rows = await parked(view);
        expect(rows).toEqual([
          {
            view,
            decider_id: stream.deciderId,
            offset: e0.offset,
            event_id: e0.event_id,
            error: 'second',
            attempts: 2,
            stream_stopped: false,
            parked_at: expect.any(Date),
            retry_requested_at: null,
          },
        ]);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          last_offset: e0.offset,
          lease_id: null,
          attempts: 0,
          last_error: null,
          free: true,
        });
        const next = await lease(view);
        expect(next.map((r) => [r.event_id, r.attempts])).toEqual([
          [e1.event_id, 0],
          [stream.events[2]?.event_id, 0],
        ]);
      });

      test('a maximum of one (or less) parks at the first failure; a null error is parked as empty', async () => {
        const { view, streams } = await viewWithStreams(2, 1);
        const [s0, s1] = streams as [Stream, Stream];
        const a = await leaseOne(view);
        expect(
          await fail(view, s0.deciderId, a.token, s0.events[0]?.offset, { maxAttempts: 1, error: null }),
        ).toBe('parked');
        const b = await leaseOne(view);
        expect(await fail(view, s1.deciderId, b.token, s1.events[0]?.offset, { maxAttempts: 0 })).toBe(
          'parked',
        );
        expect((await parked(view)).map((p) => [p.decider_id, p.error, p.attempts])).toEqual([
          [s0.deciderId, '', 1],
          [s1.deciderId, 'boom', 1],
        ]);
      });

      test("with v_stop_stream: 'stopped', the event is parked and the stream waits for an operator", async () => {
        const { view, stream } = await viewWithStream(2);
        const e0 = stream.events[0] as EventRow;
        const { token } = await leaseOne(view);
        expect(
          await fail(view, stream.deciderId, token, e0.offset, {
            error: 'fatal',
            maxAttempts: 1,
            stop: true,
          }),
        ).toBe('stopped');
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          stopped: true,
          lease_id: null,
          last_offset: 0,
          attempts: 1,
          last_error: 'fatal',
        });
        expect(await parked(view)).toEqual([
          expect.objectContaining({
            offset: e0.offset,
            event_id: e0.event_id,
            stream_stopped: true,
            attempts: 1,
          }),
        ]);
        expect(await lease(view)).toEqual([]);
        expect(await failureOf(() => ack(view, stream.deciderId, token, e0.offset))).toMatchObject(
          LEASE_LOST,
        );
      });

      test('v_stop_stream only matters at the maximum: below it the outcome is a retry', async () => {
        const { view, stream } = await viewWithStream(1);
        const { token } = await leaseOne(view);
        expect(
          await fail(view, stream.deciderId, token, stream.events[0]?.offset, { maxAttempts: 2, stop: true }),
        ).toBe('retry');
        expect(await parked(view)).toEqual([]);
        expect(await lease(view)).toHaveLength(1);
      });

      test('a stale token is refused with 55P03 and nothing is counted or parked', async () => {
        const { view, stream } = await viewWithStream(1);
        const first = await leaseOne(view);
        await release(view, stream.deciderId, first.token);
        const second = await leaseOne(view);
        const failure = await failureOf(() =>
          fail(view, stream.deciderId, first.token, stream.events[0]?.offset, { maxAttempts: 1 }),
        );
        expect(failure).toMatchObject(LEASE_LOST);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          lease_id: second.token,
          attempts: 0,
          last_error: null,
          last_offset: 0,
        });
        expect(await parked(view)).toEqual([]);
      });

      test('an offset that is not an event of the stream is refused with 22023', async () => {
        const { view, streams } = await viewWithStreams(2, 1);
        const [s0, s1] = streams as [Stream, Stream];
        const { token } = await leaseOne(view);
        const failure = await failureOf(() => fail(view, s0.deciderId, token, s1.events[0]?.offset));
        expect(failure.code).toBe('22023');
        expect(await lockOf(view, s0.deciderId)).toMatchObject({ lease_id: token, attempts: 0 });
      });
    });

    // --- parked events ---------------------------------------------------------------------------------------

    describe('list_parked_events, retry_parked_event, discard_parked_event', () => {
      /** Parks the next event of the view's only pending stream, stopping the stream or not. */
      async function parkNext(view: string, stream: Stream, stop: boolean, error = 'broken') {
        const { token, rows } = await leaseOne(view, 1);
        const offset = rows[0]?.offset;
        const outcome = await fail(view, stream.deciderId, token, offset, { maxAttempts: 1, stop, error });
        expect(outcome).toBe(stop ? 'stopped' : 'parked');
        return offset as number;
      }

      test("lists one view's parked events, or every view's, oldest first", async () => {
        const decider = await newDecider();
        const a = await newView();
        const b = await newView();
        const stream = newStream();
        for (let i = 0; i < 3; i++) await appendTo(decider, stream);
        const [e0, e1, e2] = stream.events as [EventRow, EventRow, EventRow];
        expect(await parkNext(a, stream, false, 'a0')).toBe(e0.offset);
        expect(await parkNext(a, stream, false, 'a1')).toBe(e1.offset);
        const { token } = await leaseOne(b);
        await ack(b, stream.deciderId, token, e1.offset);
        expect(await parkNext(b, stream, true, 'b2')).toBe(e2.offset);

        expect((await parked(a)).map((p) => [p.view, p.offset, p.error])).toEqual([
          [a, e0.offset, 'a0'],
          [a, e1.offset, 'a1'],
        ]);
        expect((await parked(b)).map((p) => [p.view, p.offset, p.stream_stopped])).toEqual([
          [b, e2.offset, true],
        ]);
        const all = await db.query<ParkedRow>(`SELECT * FROM list_parked_events() WHERE view = ANY($1)`, [
          [a, b],
        ]);
        expect(all.map((p) => [p.view, p.offset])).toEqual([
          [a, e0.offset],
          [a, e1.offset],
          [b, e2.offset],
        ]);
        const parkedAt = all.map((p) => p.parked_at.getTime());
        expect(parkedAt).toEqual([...parkedAt].sort((x, y) => x - y));
        expect(await parked(`view-${randomUUID()}`)).toEqual([]);
      });

      test('retrying the event a stream stopped at resumes the stream there, in order, and unparks it', async () => {
        const { view, stream } = await viewWithStream(3);
        const offset = await parkNext(view, stream, true);
        const [row] = await db.query<ParkedRow>(`SELECT * FROM retry_parked_event($1, $2)`, [view, offset]);
        expect(row).toMatchObject({ view, offset, decider_id: stream.deciderId, stream_stopped: true });
        expect(await parked(view)).toEqual([]);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          stopped: false,
          free: true,
          attempts: 0,
          last_error: null,
          last_offset: 0,
        });
        const again = await lease(view);
        expect(ids(again)).toEqual(ids(stream.events));
        expect(again[0]?.attempts).toBe(0);
      });

      test('retrying an event the stream moved past marks it for one more delivery and leaves the stream be', async () => {
        const { view, stream } = await viewWithStream(2);
        const offset = await parkNext(view, stream, false);
        const before = await lockOf(view, stream.deciderId);
        const [row] = await db.query<ParkedRow>(`SELECT * FROM retry_parked_event($1, $2)`, [view, offset]);
        expect(row).toMatchObject({
          view,
          offset,
          stream_stopped: false,
          retry_requested_at: expect.any(Date),
        });
        expect(await parked(view)).toEqual([
          expect.objectContaining({ offset, retry_requested_at: row?.retry_requested_at }),
        ]);
        const after = await lockOf(view, stream.deciderId);
        expect({ ...after, seconds_left: 0 }).toEqual({ ...before, seconds_left: 0 });
        expect(ids(await lease(view))).toEqual(ids(stream.events.slice(1)));
      });

      test('discarding the event a stream stopped at moves the stream past it', async () => {
        const { view, stream } = await viewWithStream(3);
        const offset = await parkNext(view, stream, true);
        const [row] = await db.query<ParkedRow>(`SELECT * FROM discard_parked_event($1, $2)`, [view, offset]);
        expect(row).toMatchObject({ view, offset, stream_stopped: true });
        expect(await parked(view)).toEqual([]);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          stopped: false,
          free: true,
          last_offset: offset,
          attempts: 0,
          last_error: null,
        });
        expect(ids(await lease(view))).toEqual(ids(stream.events.slice(1)));
      });

      test('discarding an event the stream moved past only removes it from the list', async () => {
        const { view, stream } = await viewWithStream(2);
        const offset = await parkNext(view, stream, false);
        const before = await lockOf(view, stream.deciderId);
        const [row] = await db.query<ParkedRow>(`SELECT * FROM discard_parked_event($1, $2)`, [view, offset]);
        expect(row).toMatchObject({ view, offset, stream_stopped: false });
        expect(await parked(view)).toEqual([]);
        const after = await lockOf(view, stream.deciderId);
        expect({ ...after, seconds_left: 0 }).toEqual({ ...before, seconds_left: 0 });
      });

      test('an offset with nothing parked (or a parked offset of another view) is refused with P0002', async () => {
        const { view, stream } = await viewWithStream(1);
        const offset = await parkNext(view, stream, true);
        const other = await newView();
        for (const fn of ['retry_parked_event', 'discard_parked_event']) {
          for (const [v, o] of [
            [view, offset + 1_000_000],
            [other, offset],
            [`view-${randomUUID()}`, offset],
          ] as const) {
            const failure = await failureOf(() => db.query(`SELECT * FROM ${fn}($1, $2)`, [v, o]));
            expect(failure.code, `${fn}(${v}, ${o})`).toBe('P0002');
          }
        }
        expect(await parked(view)).toHaveLength(1);
        expect((await lockOf(view, stream.deciderId)).stopped).toBe(true);
      });
    });

    // --- reset_view ------------------------------------------------------------------------------------------

    describe('reset_view', () => {
      test('with an unchanged start_at, positions still go back to it; leases, failures and parked events are cleared', async () => {
        const { view, streams } = await viewWithStreams(3, 2);
        const [s0, s1, s2] = streams as [Stream, Stream, Stream];
        // s0 read to its end; s2 stopped at a parked event; s1 leased again after a recorded failure.
        const a = await leaseOne(view);
        expect(a.rows[0]?.decider_id).toBe(s0.deciderId);
        await ack(view, s0.deciderId, a.token, s0.events[1]?.offset);
        const b = await leaseOne(view);
        expect(b.rows[0]?.decider_id).toBe(s1.deciderId);
        expect(await fail(view, s1.deciderId, b.token, s1.events[0]?.offset, { error: 'flaky' })).toBe(
          'retry',
        );
        const c = await leaseOne(view);
        expect(c.rows[0]?.decider_id).toBe(s2.deciderId);
        await fail(view, s2.deciderId, c.token, s2.events[0]?.offset, { maxAttempts: 1, stop: true });
        const b2 = await leaseOne(view);
        expect(b2.rows[0]).toMatchObject({ decider_id: s1.deciderId, attempts: 1 });
        expect(await parked(view)).toHaveLength(1);

        const [views] = await db.query<{ view: string; start_at: Date }>(
          `SELECT * FROM reset_view($1, (SELECT start_at FROM views WHERE view = $1))`,
          [view],
        );
        expect(views?.view).toBe(view);
        for (const stream of streams) {
          expect(await lockOf(view, stream.deciderId)).toMatchObject({
            last_offset: 0,
            offset: stream.events[1]?.offset,
            lease_id: null,
            attempts: 0,
            last_error: null,
            free: true,
            stopped: false,
          });
        }
        expect(await parked(view)).toEqual([]);
        // The holder of a lease from before the reset lost it.
        expect(await failureOf(() => ack(view, s1.deciderId, b2.token, s1.events[0]?.offset))).toMatchObject(
          LEASE_LOST,
        );
        // Everything is read again, from the start.
        const again = await lease(view);
        expect(again).toHaveLength(6);
        expect(again.every((r) => r.attempts === 0)).toBe(true);
      });

      test('a new start_at moves every stream to it, and is kept on the view', async () => {
        const { view, stream } = await viewWithStream(2);
        const [row] = await db.query<{ start_at: Date }>(`SELECT * FROM reset_view($1, '2999-06-01')`, [
          view,
        ]);
        expect(row?.start_at.getFullYear()).toBe(2999);
        // No event of the stream is that recent: nothing to read. The view's frontier starts at the oldest
        // transaction running on the server, so a transaction open elsewhere (another test's database) can make it
        // read the stream anyway: then only into a lock row with nothing to deliver, the stream passed over.
        await db.query(`SELECT advance_view($1)`, [view]);
        const rows = await db.query<{ offset: number; last_offset: number }>(
          `SELECT * FROM locks WHERE view = $1`,
          [view],
        );
        expect(rows.filter((l) => l.last_offset !== l.offset)).toEqual([]);
        expect(await lease(view)).toEqual([]);
        await db.query(`SELECT * FROM reset_view($1, '2000-01-01')`, [view]);
        expect(await lockOf(view, stream.deciderId)).toMatchObject({
          last_offset: 0,
          offset: stream.events[1]?.offset,
        });
      });

      test('leaves the other views alone', async () => {
        const decider = await newDecider();
        const a = await newView();
        const b = await newView();
        const stream = newStream();
        await appendTo(decider, stream);
        for (const view of [a, b]) {
          const { token } = await leaseOne(view);
          await fail(view, stream.deciderId, token, stream.events[0]?.offset, { maxAttempts: 1 });
        }
        await db.query(`SELECT * FROM reset_view($1, (SELECT start_at FROM views WHERE view = $1))`, [a]);
        expect((await lockOf(a, stream.deciderId)).last_offset).toBe(0);
        expect((await lockOf(b, stream.deciderId)).last_offset).toBe(stream.events[0]?.offset);
        expect(await parked(a)).toEqual([]);
        expect(await parked(b)).toHaveLength(1);
      });

      test('an unknown view is refused with P0002', async () => {
        const failure = await failureOf(() =>
          db.query(`SELECT * FROM reset_view($1, '2000-01-01')`, [`view-${randomUUID()}`]),
        );
        expect(failure.code).toBe('P0002');
      });
    });

    // --- view_status -----------------------------------------------------------------------------------------

    describe('view_status', () => {
      test('counts streams, pending, leased and stopped streams, unread events and parked events', async () => {
        const decider = await newDecider();
        const view = await newView();
        const build = async (count: number) => {
          const stream = newStream();
          for (let i = 0; i < count; i++) await appendTo(decider, stream);
          return stream;
        };
        // Read to its end: not pending.
        const done = await build(2);
        const d = await leaseOne(view);
        await ack(view, done.deciderId, d.token, done.events[1]?.offset);
        // Leased, 2 events behind.
        const leased = await build(2);
        await leaseOne(view, 1);
        // Stopped at its first event, 3 behind, 1 parked.
        const stopped = await build(3);
        const s = await leaseOne(view);
        await fail(view, stopped.deciderId, s.token, stopped.events[0]?.offset, {
          maxAttempts: 1,
          stop: true,
        });
        // Moved past a parked event, 1 behind, 1 parked.
        const movedOn = await build(2);
        const m = await leaseOne(view, 1);
        await fail(view, movedOn.deciderId, m.token, movedOn.events[0]?.offset, { maxAttempts: 1 });
        // Untouched, 1 behind: appended after the last lease, so past the view's frontier, without a lock row yet.
        await build(1);

        // The view started now: only the streams appended since have lock rows, and the untouched one's event
        // counts as behind all the same.
        const status = {
          view,
          streams: 4,
          pending_streams: 3,
          leased_streams: 1,
          stopped_streams: 1,
          events_behind: 2 + 3 + 1 + 1,
          oldest_unacked_at: leased.events[0]?.created_at,
          parked_events: 2,
        };
        expect(await statusOf(view)).toEqual(status);
        await db.query(`SELECT advance_view($1)`, [view]);
        expect(await statusOf(view)).toEqual({ ...status, streams: 5, pending_streams: 4 });
      });

      test('a view with nothing to read reports zeros and no oldest unacknowledged event', async () => {
        const view = await newView();
        await db.query(`SELECT advance_view($1)`, [view]);
        expect(await statusOf(view)).toEqual({
          view,
          streams: 0,
          pending_streams: 0,
          leased_streams: 0,
          stopped_streams: 0,
          events_behind: 0,
          oldest_unacked_at: null,
          parked_events: 0,
        });
      });

      test('the figures follow the work: acknowledging lowers them, appending raises them', async () => {
        const { view, decider, stream } = await viewWithStream(3);
        // Appended, not yet read into a lock row: behind all the same.
        expect(await statusOf(view)).toMatchObject({
          pending_streams: 0,
          leased_streams: 0,
          events_behind: 3,
        });
        await db.query(`SELECT advance_view($1)`, [view]);
        expect(await statusOf(view)).toMatchObject({
          pending_streams: 1,
          leased_streams: 0,
          events_behind: 3,
        });
        const { token } = await leaseOne(view);
        expect(await statusOf(view)).toMatchObject({ leased_streams: 1, events_behind: 3 });
        await ack(view, stream.deciderId, token, stream.events[1]?.offset);
        expect(await statusOf(view)).toMatchObject({
          pending_streams: 1,
          leased_streams: 0,
          events_behind: 1,
          oldest_unacked_at: stream.events[2]?.created_at,
        });
        await appendTo(decider, stream);
        expect(await statusOf(view)).toMatchObject({ events_behind: 2 });
      });

      test('lists every view, in name order', async () => {
        await newView();
        const names = (await db.query<{ view: string }>(`SELECT view FROM view_status()`)).map((r) => r.view);
        expect(names).toEqual([...names].sort());
        const [registered] = await db.query<{ count: number }>(`SELECT count(*)::int AS count FROM views`);
        expect(names).toHaveLength(registered?.count ?? -1);
      });
    });

    // --- set_wakeups -----------------------------------------------------------------------------------------

    describe('set_wakeups', () => {
      const triggers = async () => {
        const [row] = await db.query<{ count: number }>(
          `SELECT count(*)::int AS count FROM pg_trigger
           WHERE tgrelid = 'events'::regclass AND tgname = 't_notify_events_appended'`,
        );
        return row?.count;
      };
      const setWakeups = async (on: boolean) =>
        (await db.query<{ enabled: boolean }>(`SELECT set_wakeups($1::boolean) AS enabled`, [on]))[0]
          ?.enabled;

      test('creates and drops the statement trigger on events, idempotently; appends work either way', async () => {
        const decider = await newDecider();
        const stream = newStream();
        try {
          expect(await setWakeups(true)).toBe(true);
          expect(await triggers()).toBe(1);
          expect(await setWakeups(true)).toBe(true);
          expect(await triggers()).toBe(1);
          const [trigger] = await db.query<{ statement: boolean; insert: boolean }>(
            `SELECT (tgtype & 1) = 0 AS statement, (tgtype & 4) <> 0 AS insert FROM pg_trigger
             WHERE tgrelid = 'events'::regclass AND tgname = 't_notify_events_appended'`,
          );
          expect(trigger).toEqual({ statement: true, insert: true });
          await appendTo(decider, stream);
        } finally {
          expect(await setWakeups(false)).toBe(false);
        }
        expect(await triggers()).toBe(0);
        expect(await setWakeups(false)).toBe(false);
        expect(await triggers()).toBe(0);
        await appendTo(decider, stream);
        expect(stream.events).toHaveLength(2);
      });

      const { listen } = capabilities;
      if (listen) {
        test("with wake-ups on, a listener on 'fstore_events' hears of each appending transaction once", async () => {
          const heard: string[] = [];
          const unlisten = await listen('fstore_events', (payload) => heard.push(payload));
          /** Sends a marker and waits for it: notifications come in commit order, so all earlier ones are in. */
          const settle = async (marker: string) => {
            await db.query(`SELECT pg_notify('fstore_events', $1)`, [marker]);
            const deadline = Date.now() + 5000;
            while (!heard.includes(marker)) {
              if (Date.now() > deadline) throw new Error(`marker ${marker} never arrived`);
              await sleep(10);
            }
          };
          /** The wake-ups heard since the last marker. */
          const wakeupsSince = (marker: string) =>
            heard.slice(heard.indexOf(marker) + 1).filter((p) => p === '');
          const decider = await newDecider();
          const stream = newStream();
          try {
            await settle('start');
            // Off (the default): appending notifies nobody.
            await appendTo(decider, stream);
            await settle('off');
            expect(wakeupsSince('start')).toEqual([]);

            await db.query(`SELECT set_wakeups(true)`);
            await appendTo(decider, stream);
            await settle('one append');
            expect(wakeupsSince('off')).toEqual(['']);

            // One statement appending several events: one wake-up.
            await db.query(`SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb)`, [
              decider,
              stream.deciderId,
              stream.events.at(-1)?.event_id,
              randomUUID(),
              JSON.stringify([1, 2, 3].map((n) => ({ event: 'e1', event_id: randomUUID(), data: { n } }))),
            ]);
            await settle('one batch');
            expect(wakeupsSince('one append')).toEqual(['']);

            if (capabilities.transaction) {
              // Several statements in one transaction: their notifications fold into one.
              const other = newStream();
              await capabilities.transaction(async (tx) => {
                await appendTo(decider, other, tx);
                await appendTo(decider, other, tx);
                await appendTo(decider, other, tx);
              });
              await settle('one transaction');
              expect(wakeupsSince('one batch')).toEqual(['']);
            }
          } finally {
            await db.query(`SELECT set_wakeups(false)`);
            await unlisten();
          }
        });
      }
    });

    // --- transactions ----------------------------------------------------------------------------------------

    const { transaction } = capabilities;
    if (transaction) {
      describe('ack_events in the transaction that writes the read model', () => {
        const readModel = `projection_read_model_${randomUUID().replaceAll('-', '')}`;
        beforeAll(async () => {
          await db.query(`CREATE TABLE ${readModel} (view text, event_offset bigint, worker text)`);
        });
        const applied = (view: string) =>
          db.query<{ event_offset: number; worker: string }>(
            `SELECT event_offset::float8 AS event_offset, worker FROM ${readModel} WHERE view = $1 ORDER BY event_offset`,
            [view],
          );

        /** A worker's unit of work: apply the leased events to the read model and acknowledge, in one transaction. */
        const handle = (view: string, deciderId: string, worker: string, token: string, rows: LeasedRow[]) =>
          transaction(async (tx) => {
            for (const row of rows) {
              await tx.query(`INSERT INTO ${readModel} VALUES ($1, $2, $3)`, [view, row.offset, worker]);
            }
            return ack(view, deciderId, token, rows.at(-1)?.offset, tx);
          });

        test('a worker that lost its lease has its writes rolled back; the new holder applies each event once', async () => {
          const { view, stream } = await viewWithStream(3);
          const a = await leaseOne(view, 100, 1);
          await sleep(1100);
          const b = await leaseOne(view);
          const failure = await failureOf(() => handle(view, stream.deciderId, 'A', a.token, a.rows));
          expect(failure).toMatchObject(LEASE_LOST);
          expect(await applied(view)).toEqual([]);
          const [lock] = await handle(view, stream.deciderId, 'B', b.token, b.rows);
          expect(lock).toMatchObject({ last_offset: stream.events[2]?.offset, lease_id: null });
          expect(await applied(view)).toEqual(
            stream.events.map((e) => ({ event_offset: e.offset, worker: 'B' })),
          );
          expect(await lease(view)).toEqual([]);
        });

        test('an acknowledgement whose transaction rolls back is undone: the holder keeps its lease', async () => {
          const { view, stream } = await viewWithStream(2);
          const { token, rows } = await leaseOne(view);
          const failure = await failureOf(() =>
            transaction(async (tx) => {
              await ack(view, stream.deciderId, token, stream.events[1]?.offset, tx);
              await tx.query(`SELECT 1 / 0`);
            }),
          );
          expect(failure.code).toBe('22012');
          expect(await lockOf(view, stream.deciderId)).toMatchObject({
            lease_id: token,
            last_offset: 0,
            free: false,
          });
          const [lock] = await handle(view, stream.deciderId, 'A', token, rows);
          expect(lock?.last_offset).toBe(stream.events[1]?.offset);
          expect(await applied(view)).toHaveLength(2);
        });
      });
    }
  });
}
