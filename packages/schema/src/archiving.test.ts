/**
 * Archiving and retention (0022_archiving_and_retention), on a real PostgreSQL: a closed stream that every view has
 * handled leaves the log for archived_events, loads as before and says it was archived; appends to it are refused as
 * to a closed stream; views skip it, and a view that starts before it says so; retention removes archived streams
 * older than an age, in batches, with an audit row, and touches no view. Every test uses a decider of its own, and
 * the batch tests a database of their own (archive_closed_streams and remove_archived_streams take every decider's).
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, describe, expect, test } from 'vitest';
import { tableContents } from './test-support/refusals.js';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
const { sql } = db;

/** A decider of its own, with one event type. */
async function newDecider(on: postgres.Sql = sql) {
  const decider = `decider-${randomUUID()}`;
  await on`SELECT * FROM register_decider_event(${decider}, 'happened')`;
  return decider;
}

/** Appends `count` chained events to a stream of its own, the last one final when `closed`; returns their ids. */
async function stream(decider: string, count: number, closed = true, on: postgres.Sql = sql) {
  const id = `s-${randomUUID()}`;
  const events = Array.from({ length: count }, (_, i) => ({
    event: 'happened',
    event_id: randomUUID(),
    data: { n: i },
    final: closed && i === count - 1,
  }));
  await on`SELECT * FROM append_events(${decider}, ${id}, NULL, ${randomUUID()}, ${on.json(events)})`;
  return { id, eventIds: events.map((e) => e.event_id) };
}

/** Registers a view of `decider` reading from the beginning, and has it handle everything there is: a lease of
 * every stream, acknowledged. */
async function caughtUpView(decider: string, on: postgres.Sql = sql) {
  const view = `view-${randomUUID()}`;
  await on`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
  await handleEverything(view, on);
  return view;
}

async function handleEverything(view: string, on: postgres.Sql = sql) {
  for (;;) {
    const leased = await on<{ lease_id: string; decider_id: string; offset: string }[]>`
      SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 1000, 1000, 60)`;
    if (leased.length === 0) return;
    const last = new Map(leased.map((row) => [row.decider_id, row]));
    for (const row of last.values())
      await on`SELECT * FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
  }
}

const hotEvents = async (id: string) =>
  (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events WHERE decider_id = ${id}`)[0]?.n;

describe('archive_stream', () => {
  test('moves a closed, handled stream out of the log; get_events, get_last_event and get_event read it as before', async () => {
    const decider = await newDecider();
    const { id, eventIds } = await stream(decider, 3);
    await caughtUpView(decider);
    const before = {
      all: await sql`SELECT * FROM get_events(${id})`,
      ofDecider: await sql`SELECT * FROM get_events(${id}, ${decider})`,
      page: await sql`SELECT * FROM get_events(${id}, ${decider}, 0, 2)`,
      last: await sql`SELECT * FROM get_last_event(${id}, ${decider})`,
      one: await sql`SELECT * FROM get_event(${eventIds[1] as string})`,
    };
    expect(before.all).toHaveLength(3);

    const [archived] = await sql`SELECT * FROM archive_stream(${decider}, ${id})`;
    const [me] = await sql<{ user: string }[]>`SELECT session_user AS user`;
    expect(archived).toMatchObject({
      decider,
      decider_id: id,
      events: '3',
      last_offset: before.last[0]?.offset,
      closed_at: before.last[0]?.created_at,
      archived_by: me?.user,
      removed_at: null,
    });
    expect(await hotEvents(id)).toBe(0);
    expect(await sql`SELECT * FROM archived_events WHERE decider_id = ${id} ORDER BY "offset"`).toEqual(
      before.all,
    );
    expect({
      all: await sql`SELECT * FROM get_events(${id})`,
      ofDecider: await sql`SELECT * FROM get_events(${id}, ${decider})`,
      page: await sql`SELECT * FROM get_events(${id}, ${decider}, 0, 2)`,
      last: await sql`SELECT * FROM get_last_event(${id}, ${decider})`,
      one: await sql`SELECT * FROM get_event(${eventIds[1] as string})`,
    }).toEqual(before);
    expect(await sql`SELECT * FROM get_archived_stream(${id}, ${decider})`).toEqual([archived]);
  });

  test('a second call returns the same row and moves nothing', async () => {
    const decider = await newDecider();
    const { id } = await stream(decider, 2);
    const [first] = await sql`SELECT * FROM archive_stream(${decider}, ${id})`;
    const before = await tableContents(sql);
    expect(await sql`SELECT * FROM archive_stream(${decider}, ${id})`).toEqual([first]);
    expect(await tableContents(sql)).toEqual(before);
  });

  test('refuses an open stream, and one that a view has not handled yet (naming the view), writing nothing', async () => {
    const decider = await newDecider();
    const open = await stream(decider, 2, false);
    const before = await tableContents(sql);
    expect(await failureOf(() => sql`SELECT * FROM archive_stream(${decider}, ${open.id})`)).toMatchObject({
      code: '55000',
      constraint: 'archived_streams_closed',
    });
    expect(await tableContents(sql)).toEqual(before);

    const view = await caughtUpView(decider);
    const late = await stream(decider, 2);
    // Past the frontier, then leased and unacknowledged, then parked: each holds the stream back.
    const refusal = () => failureOf(() => sql`SELECT * FROM archive_stream(${decider}, ${late.id})`);
    const unhandled = await refusal();
    expect(unhandled).toMatchObject({ code: '55000', constraint: 'archived_streams_handled' });
    expect(JSON.parse(unhandled.detail ?? '')).toEqual({ view });
    const [leased] = await sql<{ lease_id: string; offset: string }[]>`
      SELECT lease_id, "offset" FROM lease_events(${view}, 10, 1, 60) WHERE decider_id = ${late.id}`;
    expect(await refusal()).toMatchObject({ constraint: 'archived_streams_handled' });
    await sql`SELECT * FROM fail_event(${view}, ${late.id}, ${leased?.lease_id ?? null}, ${leased?.offset ?? null}, 'boom', 0, 1)`;
    await handleEverything(view);
    expect(await sql`SELECT count(*)::int AS n FROM parked_events WHERE view = ${view}`).toEqual([{ n: 1 }]);
    const beforeParked = await tableContents(sql);
    expect(await refusal()).toMatchObject({ constraint: 'archived_streams_handled' });
    expect(await tableContents(sql)).toEqual(beforeParked);
    await sql`SELECT * FROM discard_parked_event(${view}, ${leased?.offset ?? null})`;
    expect(await sql`SELECT decider_id FROM archive_stream(${decider}, ${late.id})`).toEqual([
      { decider_id: late.id },
    ]);
  });

  test("a view of other deciders does not hold a stream back; the stream's lock rows and snapshots go with it", async () => {
    const decider = await newDecider();
    const elsewhere = await newDecider();
    await sql`SELECT * FROM register_view(${`other-${randomUUID()}`}, 100, 'epoch', ARRAY[${elsewhere}]::text[], NULL)`;
    const { id } = await stream(decider, 3);
    const view = await caughtUpView(decider);
    const [last] = await sql<{ offset: string }[]>`SELECT "offset" FROM get_last_event(${id}, ${decider})`;
    await sql`SELECT save_snapshot(${decider}, ${id}, 'v1', ${last?.offset ?? null}, '{"n": 3}')`;
    expect(
      await sql`SELECT count(*)::int AS n FROM locks WHERE view = ${view} AND decider_id = ${id}`,
    ).toEqual([{ n: 1 }]);
    await sql`SELECT * FROM archive_stream(${decider}, ${id})`;
    expect(await sql`SELECT count(*)::int AS n FROM locks WHERE decider_id = ${id}`).toEqual([{ n: 0 }]);
    expect(await sql`SELECT * FROM get_snapshot(${decider}, ${id}, 'v1')`).toEqual([]);
  });

  test('appends to an archived stream are refused as appends to a closed stream, by every path', async () => {
    const decider = await newDecider();
    const { id, eventIds } = await stream(decider, 2);
    await sql`SELECT * FROM archive_stream(${decider}, ${id})`;
    const last = eventIds[1] as string;
    const closed = { code: '23514', constraint: 'events_stream_not_final' };
    const before = await tableContents(sql);
    const event = [{ event: 'happened', event_id: randomUUID(), data: {} }];
    for (const statement of [
      () =>
        sql`SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()}, NULL)`,
      () =>
        sql`SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${id}, '{}', ${randomUUID()}, ${last})`,
      () => sql`SELECT * FROM append_events(${decider}, ${id}, NULL, ${randomUUID()}, ${sql.json(event)})`,
      () => sql`SELECT * FROM append_events(${decider}, ${id}, ${last}, ${randomUUID()}, ${sql.json(event)})`,
    ]) {
      const failure = await failureOf(statement);
      expect(failure).toMatchObject(closed);
      expect(failure.message).toMatch(/closed \(archived\)/);
    }
    expect(await tableContents(sql)).toEqual(before);
  });

  test("only the owner's functions get through: the owner's own DELETE of events is still a no-op", async () => {
    const decider = await newDecider();
    const { id } = await stream(decider, 1);
    await sql`DELETE FROM events WHERE decider_id = ${id}`;
    expect(await hotEvents(id)).toBe(1);
  });

  test('the gate that archiving opens stays shut for a role that may DELETE from events but does not own it', async () => {
    const decider = await newDecider();
    const { id } = await stream(decider, 1);
    const role = `deleter_${randomUUID().replaceAll('-', '')}`;
    await sql.unsafe(`CREATE ROLE ${role} NOLOGIN`);
    try {
      await sql.unsafe(`GRANT SELECT, DELETE ON events, archived_events TO ${role}`);
      const archived = async () => (await sql`SELECT count(*)::int AS n FROM archived_events`)[0]?.n;
      await stream(decider, 1).then((s) => sql`SELECT * FROM archive_stream(${decider}, ${s.id})`);
      const held = await archived();
      expect(held).toBeGreaterThan(0);
      await sql.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL ROLE ${role}`);
        await tx`SELECT set_config('fstore.moving_history', 'on', true)`;
        await tx`DELETE FROM events WHERE decider_id = ${id}`;
        await tx`DELETE FROM archived_events`;
      });
      expect(await hotEvents(id)).toBe(1);
      expect(await archived()).toBe(held);
    } finally {
      await sql.unsafe(`REVOKE ALL ON events, archived_events FROM ${role}`);
      await sql.unsafe(`DROP ROLE ${role}`);
    }
  });
});

describe('views and archived streams', () => {
  test('a view registered from before them skips them and says so; missing_history and view_status count them', async () => {
    const decider = await newDecider();
    const archived = await stream(decider, 3);
    const kept = await stream(decider, 2);
    await sql`SELECT * FROM archive_stream(${decider}, ${archived.id})`;

    const notices: string[] = [];
    const watched = db.connect({ max: 1, onnotice: (n) => notices.push(`${n.severity}: ${n.message}`) });
    const view = `view-${randomUUID()}`;
    await watched`SELECT * FROM register_view(${view}, 100, 'epoch', ARRAY[${decider}]::text[], NULL)`;
    expect(notices).toEqual([
      `WARNING: view ${view} skips 1 archived streams (3 events) and 0 streams removed by retention (0 events), closed since its start point`,
    ]);
    const leased = await sql<
      { decider_id: string }[]
    >`SELECT decider_id FROM lease_events(${view}, 100, 100, 60)`;
    expect(new Set(leased.map((row) => row.decider_id))).toEqual(new Set([kept.id]));
    expect(await sql`SELECT * FROM missing_history(${view})`).toEqual([
      { archived_streams: '1', archived_events: '3', removed_streams: '0', removed_events: '0' },
    ]);
    const [status] =
      await sql`SELECT archived_streams, archived_events FROM view_status() WHERE view = ${view}`;
    expect(status).toEqual({ archived_streams: '1', archived_events: '3' });

    // A reset to the same start point says it again; one after the stream closed does not.
    notices.length = 0;
    await watched`SELECT * FROM reset_view(${view}, 'epoch'::timestamp, ARRAY[${decider}]::text[], NULL)`;
    await watched`SELECT * FROM reset_view(${view}, 'epoch'::timestamp)`;
    expect(notices).toHaveLength(2);
    notices.length = 0;
    await watched`SELECT * FROM reset_view(${view}, (now() + interval '1 minute')::timestamp)`;
    expect(notices).toEqual([]);
    expect(await sql`SELECT * FROM missing_history(${view})`).toEqual([
      { archived_streams: '0', archived_events: '0', removed_streams: '0', removed_events: '0' },
    ]);
  });

  test('a view that handled a stream before it was archived carries on as if nothing happened', async () => {
    const decider = await newDecider();
    const { id } = await stream(decider, 2);
    const view = await caughtUpView(decider);
    await sql`SELECT * FROM archive_stream(${decider}, ${id})`;
    const next = await stream(decider, 1, false);
    const leased = await sql<
      { decider_id: string }[]
    >`SELECT decider_id FROM lease_events(${view}, 100, 100, 60)`;
    expect(leased.map((row) => row.decider_id)).toEqual([next.id]);
    const [status] =
      await sql`SELECT events_behind, archived_streams FROM view_status() WHERE view = ${view}`;
    expect(status).toEqual({ events_behind: '1', archived_streams: '1' });
  });
});

/** The batch functions take every decider's streams: their tests get a database of their own. */
const own = await createTestDatabase();
afterAll(() => own.drop());

describe('archive_closed_streams and remove_archived_streams, in batches', () => {
  const on = own.sql;

  test('archives the streams closed before a point, a batch per call, leaving open and unhandled ones', async () => {
    const decider = await newDecider(on);
    const closed = [];
    for (let i = 0; i < 5; i++) closed.push(await stream(decider, 2, true, on));
    const open = await stream(decider, 2, false, on);
    const view = await caughtUpView(decider, on);
    const unhandled = await stream(decider, 1, true, on);
    const [{ cut } = { cut: '' }] = await on<{ cut: string }[]>`SELECT now()::text AS cut`;
    await on`SELECT pg_sleep(0.01)`;
    const later = await stream(decider, 1, true, on);

    expect(await on`SELECT archive_closed_streams(${cut}::timestamptz, 2) AS n`).toEqual([{ n: 2 }]);
    expect(await on`SELECT archive_closed_streams(${cut}::timestamptz, 2) AS n`).toEqual([{ n: 2 }]);
    expect(await on`SELECT archive_closed_streams(${cut}::timestamptz, 2) AS n`).toEqual([{ n: 1 }]);
    expect(await on`SELECT archive_closed_streams(${cut}::timestamptz, 2) AS n`).toEqual([{ n: 0 }]);
    const archived = await on<
      { decider_id: string }[]
    >`SELECT decider_id FROM archived_streams ORDER BY last_offset`;
    expect(archived.map((row) => row.decider_id)).toEqual(closed.map((s) => s.id));
    for (const s of [open, unhandled, later])
      expect(await on`SELECT count(*)::int AS n FROM events WHERE decider_id = ${s.id}`).toEqual([
        { n: s === open ? 2 : 1 },
      ]);
    await handleEverything(view, on);
    expect(await on`SELECT archive_closed_streams(now(), 100) AS n`).toEqual([{ n: 2 }]);
  });

  test('retention removes the archived streams closed before an age, a batch per call, each with an audit row', async () => {
    const decider = await newDecider(on);
    const view = await caughtUpView(decider, on);
    const old = [await stream(decider, 2, true, on), await stream(decider, 3, true, on)];
    const recent = await stream(decider, 1, true, on);
    await handleEverything(view, on);
    await on`SELECT archive_closed_streams(now(), 100)`;
    // Age them: closed a year ago (the owner may write archived_streams; nothing else changes).
    await on`UPDATE archived_streams SET closed_at = closed_at - interval '1 year'
             WHERE decider_id IN ${on(old.map((s) => s.id))}`;
    const [frontier] = await on`SELECT * FROM view_frontiers WHERE view = ${view}`;
    const locks = await on`SELECT * FROM locks WHERE view = ${view} ORDER BY decider_id`;

    expect(await on`SELECT remove_archived_streams(interval '30 days', 1) AS n`).toEqual([{ n: 1 }]);
    expect(await on`SELECT remove_archived_streams(interval '30 days', 1) AS n`).toEqual([{ n: 1 }]);
    expect(await on`SELECT remove_archived_streams(interval '30 days', 1) AS n`).toEqual([{ n: 0 }]);
    for (const s of old) {
      expect(await on`SELECT * FROM get_events(${s.id}, ${decider})`).toEqual([]);
      const [row] = await on`SELECT removed_at FROM get_archived_stream(${s.id}, ${decider})`;
      expect(row?.removed_at).toBeInstanceOf(Date);
    }
    expect(await on`SELECT count(*)::int AS n FROM get_events(${recent.id}, ${decider})`).toEqual([{ n: 1 }]);
    const [me] = await on<{ user: string }[]>`SELECT session_user AS user`;
    expect(
      await on`SELECT streams, events, removed_by FROM retention_runs ORDER BY removed_at, events`,
    ).toEqual([
      { streams: '1', events: '2', removed_by: me?.user },
      { streams: '1', events: '3', removed_by: me?.user },
    ]);
    // The view that handled them is untouched; one built from the beginning is told what it lacks.
    expect(await on`SELECT * FROM view_frontiers WHERE view = ${view}`).toEqual([frontier]);
    expect(await on`SELECT * FROM locks WHERE view = ${view} ORDER BY decider_id`).toEqual(locks);
    expect(await on`SELECT * FROM missing_history(${view})`).toEqual([
      { archived_streams: '1', archived_events: '1', removed_streams: '2', removed_events: '5' },
    ]);
    // A removed stream stays closed: its id cannot start again.
    const failure = await failureOf(
      () =>
        on`SELECT * FROM append_event('happened', ${randomUUID()}, ${decider}, ${old[0]?.id ?? ''}, '{}', ${randomUUID()}, NULL)`,
    );
    expect(failure).toMatchObject({ code: '23514', constraint: 'events_stream_not_final' });
  });
});
