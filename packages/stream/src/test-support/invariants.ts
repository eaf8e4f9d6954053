/**
 * Waiting for the views to catch up, and the invariants every scenario ends with: each stream's chain whole, the
 * log exactly what producers saw acknowledged, every event in each read model exactly once and in stream order.
 */
import type postgres from 'postgres';
import { counterEvents, sleep } from './scenario-fixtures.js';

/** Polls `check` until it returns true; throws (with `explain()`) after timeoutMs. */
export async function waitUntil(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; what: string; explain?: () => Promise<string> | string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) {
      const explanation = options.explain ? `\n${await options.explain()}` : '';
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${explanation}`);
    }
    await sleep(100);
  }
}

/** Whether every event of the log is in the read model (at least once). */
export async function caughtUp(sql: postgres.Sql, view: string): Promise<boolean> {
  const [row] = await sql<{ missing: number }[]>`
    SELECT count(*)::int AS missing
    FROM events e
    WHERE NOT EXISTS (SELECT 1 FROM projected p WHERE p.view = ${view} AND p."offset" = e."offset")`;
  return row?.missing === 0;
}

/** The state of a view for a timeout message: status figures and the streams not caught up. */
export async function describeView(sql: postgres.Sql, view: string): Promise<string> {
  const status = await sql`SELECT * FROM view_status() WHERE view = ${view}`;
  const behind = await sql`
    SELECT decider_id, "offset", last_offset, locked_until, lease_id, attempts, last_error
    FROM locks WHERE view = ${view} AND last_offset < "offset" ORDER BY decider_id LIMIT 10`;
  const parked = await sql`SELECT "offset", attempts, error FROM parked_events WHERE view = ${view} LIMIT 5`;
  // The database's other sessions: a batch stuck in a transaction, or waiting on a lock, shows here.
  const sessions = await sql`
    SELECT pid, application_name, state, wait_event_type, wait_event,
           round(extract(epoch FROM clock_timestamp() - xact_start)::numeric, 1) AS xact_s,
           round(extract(epoch FROM clock_timestamp() - state_change)::numeric, 1) AS state_s,
           left(query, 100) AS query
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
    ORDER BY xact_start NULLS LAST
    LIMIT 20`;
  return JSON.stringify({ status, behind, parked, sessions }, null, 1);
}

export interface ReadModelRow {
  deciderId: string;
  offset: number;
  handledBy: string;
}

export interface ReadModelReport {
  rows: ReadModelRow[];
  /** Offsets in the read model more than once. */
  duplicates: number[];
  /** Offsets of the log missing from the read model. */
  missing: number[];
  /** Offsets in the read model that are not in the log. */
  unknown: number[];
  /** Streams whose events were handled out of offset order (by handled_at), with the order seen. */
  outOfOrder: { deciderId: string; offsets: number[] }[];
}

/** Compares the read model with the log: every event exactly once, each stream in offset order. */
export async function inspectReadModel(sql: postgres.Sql, view: string): Promise<ReadModelReport> {
  const log = await sql<{ offset: string }[]>`SELECT "offset" FROM events ORDER BY "offset"`;
  const projected = await sql<{ decider_id: string; offset: string; handled_by: string }[]>`
    SELECT decider_id, "offset", handled_by FROM projected WHERE view = ${view}
    ORDER BY decider_id, handled_at, seq`;
  const rows = projected.map((row) => ({
    deciderId: row.decider_id,
    offset: Number(row.offset),
    handledBy: row.handled_by,
  }));
  const inLog = new Set(log.map((row) => Number(row.offset)));
  const seen = new Map<number, number>();
  for (const row of rows) seen.set(row.offset, (seen.get(row.offset) ?? 0) + 1);
  const byStream = new Map<string, number[]>();
  for (const row of rows) {
    const offsets = byStream.get(row.deciderId) ?? [];
    offsets.push(row.offset);
    byStream.set(row.deciderId, offsets);
  }
  const outOfOrder = [...byStream]
    .filter(([, offsets]) =>
      offsets.some((offset, index) => index > 0 && offset <= (offsets[index - 1] ?? 0)),
    )
    .map(([deciderId, offsets]) => ({ deciderId, offsets }));
  return {
    rows,
    duplicates: [...seen].filter(([, count]) => count > 1).map(([offset]) => offset),
    missing: [...inLog].filter((offset) => !seen.has(offset)),
    unknown: [...seen.keys()].filter((offset) => !inLog.has(offset)),
    outOfOrder,
  };
}

export interface LogReport {
  /** Acknowledged events missing from the log, or in it more than once. */
  notExactlyOnce: string[];
  /** Events in the log that no producer saw acknowledged. */
  unacknowledged: string[];
  /** Streams whose log differs from what was acknowledged (order), or whose previous_id chain is broken. */
  brokenStreams: { deciderId: string; problem: string }[];
}

/** Compares the log with what producers saw acknowledged, and checks every stream's previous_id chain. */
export async function inspectLog(sql: postgres.Sql, acknowledged: Map<string, string[]>): Promise<LogReport> {
  const log = await sql<
    { event_id: string; decider_id: string; previous_id: string | null; offset: string }[]
  >`
    SELECT event_id, decider_id, previous_id, "offset" FROM events ORDER BY "offset"`;
  const counts = new Map<string, number>();
  for (const row of log) counts.set(row.event_id, (counts.get(row.event_id) ?? 0) + 1);
  const allAcknowledged = new Set([...acknowledged.values()].flat());
  const report: LogReport = {
    notExactlyOnce: [...allAcknowledged].filter((id) => counts.get(id) !== 1),
    unacknowledged: log.map((row) => row.event_id).filter((id) => !allAcknowledged.has(id)),
    brokenStreams: [],
  };
  type Row = (typeof log)[number];
  const streams = new Map<string, Row[]>();
  for (const row of log) {
    const rows = streams.get(row.decider_id) ?? [];
    rows.push(row);
    streams.set(row.decider_id, rows);
  }
  for (const [deciderId, rows] of streams) {
    rows.forEach((row, index) => {
      const expected = index === 0 ? null : (rows[index - 1]?.event_id ?? null);
      if (row.previous_id !== expected) {
        report.brokenStreams.push({
          deciderId,
          problem: `event ${row.event_id} (offset ${row.offset}) follows ${row.previous_id}, expected ${expected}`,
        });
      }
    });
    const ids = rows.map((row) => row.event_id).join();
    if (ids !== (acknowledged.get(deciderId) ?? []).join()) {
      report.brokenStreams.push({ deciderId, problem: 'the log differs from the acknowledged appends' });
    }
  }
  return report;
}

interface LogRow {
  event_id: string;
  decider_id: string;
  previous_id: string | null;
  offset: string;
  final: boolean;
}

/**
 * Every stream's previous_id chain, in offset order: the first event has no previous, each next one names the one
 * before (so the chain is whole and has no fork, and offsets increase along it), and a final event, if any, is the
 * last. Returns one line per problem.
 */
export async function inspectChains(sql: postgres.Sql): Promise<string[]> {
  const log = await sql<LogRow[]>`
    SELECT event_id, decider_id, previous_id, "offset", final FROM events ORDER BY decider_id, "offset"`;
  const problems: string[] = [];
  let previous: LogRow | undefined;
  for (const row of log) {
    const sameStream = previous?.decider_id === row.decider_id;
    const expected = sameStream ? (previous?.event_id ?? null) : null;
    if (row.previous_id !== expected) {
      problems.push(
        `${row.decider_id}: event ${row.event_id} (offset ${row.offset}) follows ${row.previous_id}, expected ${expected}`,
      );
    }
    if (sameStream && previous?.final) {
      problems.push(`${row.decider_id}: event ${row.event_id} (offset ${row.offset}) after the final event`);
    }
    previous = row;
  }
  return problems;
}

export interface FoldMismatch {
  deciderId: string;
  log: { events: number; total: number; lastOffset: number; closed: boolean } | null;
  readModel: { events: number; total: number; lastOffset: number; closed: boolean; inOrder: boolean } | null;
}

/** Compares `counter_totals` of a view with the same fold of the log (Counter streams). Returns the streams that differ. */
export async function inspectFold(sql: postgres.Sql, view: string): Promise<FoldMismatch[]> {
  const fold = await sql<
    { decider_id: string; events: number; total: string; last_offset: string; closed: boolean }[]
  >`
    SELECT decider_id,
           count(*)::int                                                   AS events,
           coalesce(sum((data ->> 'n')::bigint) FILTER (WHERE event = 'Incremented'), 0) AS total,
           max("offset")                                                   AS last_offset,
           bool_or(final)                                                  AS closed
    FROM events
    WHERE decider = ${counterEvents.decider}
    GROUP BY decider_id`;
  const totals = await sql<
    {
      decider_id: string;
      events: number;
      total: string;
      last_offset: string;
      closed: boolean;
      in_order: boolean;
    }[]
  >`SELECT decider_id, events, total, last_offset, closed, in_order FROM counter_totals WHERE view = ${view}`;
  const fromLog = new Map(
    fold.map((row) => [
      row.decider_id,
      {
        events: row.events,
        total: Number(row.total),
        lastOffset: Number(row.last_offset),
        closed: row.closed,
      },
    ]),
  );
  const fromReadModel = new Map(
    totals.map((row) => [
      row.decider_id,
      {
        events: row.events,
        total: Number(row.total),
        lastOffset: Number(row.last_offset),
        closed: row.closed,
        inOrder: row.in_order,
      },
    ]),
  );
  const mismatches: FoldMismatch[] = [];
  for (const deciderId of new Set([...fromLog.keys(), ...fromReadModel.keys()])) {
    const log = fromLog.get(deciderId) ?? null;
    const readModel = fromReadModel.get(deciderId) ?? null;
    const same =
      log &&
      readModel?.inOrder &&
      log.events === readModel.events &&
      log.total === readModel.total &&
      log.lastOffset === readModel.lastOffset &&
      log.closed === readModel.closed;
    if (!same) mismatches.push({ deciderId, log, readModel });
  }
  return mismatches;
}

export interface InvariantsReport {
  /** Broken or forked previous_id chains, events after a final one (inspectChains). */
  chains: string[];
  /** When the producers' acknowledgements are given: acknowledged events not in the log exactly once, or in an other order, and events in the log that no producer saw acknowledged. */
  log: { notExactlyOnce: number; unacknowledged: number; streamsDiffering: string[] };
  views: Record<
    string,
    {
      /** Events of the log delivered (committed to the read model) more than once, or never. */
      duplicates: number[];
      missing: number[];
      unknown: number[];
      /** Streams handled out of offset order. */
      outOfOrder: string[];
      /** Streams whose fold in the read model differs from the fold of the log. */
      foldMismatches: FoldMismatch[];
      /** Streams whose acknowledged position is not their last event, or that are still leased. */
      notAcked: { deciderId: string; lastOffset: number; head: number; leased: boolean }[];
      /** Parked events (no scenario's handler fails: none should be). */
      parked: number[];
    }
  >;
}

/** The report of a scenario that kept every invariant: compare with `toEqual`. */
export function cleanReport(views: readonly string[]): InvariantsReport {
  return {
    chains: [],
    log: { notExactlyOnce: 0, unacknowledged: 0, streamsDiffering: [] },
    views: Object.fromEntries(
      views.map((view) => [
        view,
        {
          duplicates: [],
          missing: [],
          unknown: [],
          outOfOrder: [],
          foldMismatches: [],
          notAcked: [],
          parked: [],
        },
      ]),
    ),
  };
}

/**
 * Checks, once the views have caught up: every stream's chain is whole and unforked, and nothing follows a final
 * event; the log holds exactly what producers saw acknowledged (when `acknowledged` is given, per stream in order);
 * and for each view, every event was committed to the read model exactly once, in stream order, the read model's
 * fold equals the log's, every stream is acknowledged up to its last event and not leased, and nothing is parked.
 */
export async function checkInvariants(
  sql: postgres.Sql,
  views: readonly string[],
  acknowledged?: Map<string, string[]>,
): Promise<InvariantsReport> {
  const report = cleanReport(views);
  report.chains = (await inspectChains(sql)).slice(0, 20);
  if (acknowledged) {
    const log = await inspectLog(sql, acknowledged);
    report.log = {
      notExactlyOnce: log.notExactlyOnce.length,
      unacknowledged: log.unacknowledged.length,
      streamsDiffering: log.brokenStreams
        .map((broken) => `${broken.deciderId}: ${broken.problem}`)
        .slice(0, 20),
    };
  }
  for (const view of views) {
    const readModel = await inspectReadModel(sql, view);
    const notAcked = await sql<{ decider_id: string; last_offset: string; head: string; leased: boolean }[]>`
      SELECT l.decider_id, l.last_offset, h.head, l.lease_id IS NOT NULL AS leased
      FROM locks l
      JOIN (SELECT decider_id, max("offset") AS head FROM events GROUP BY decider_id) h USING (decider_id)
      WHERE l.view = ${view} AND (l.last_offset <> h.head OR l.lease_id IS NOT NULL)
      ORDER BY l.decider_id`;
    const parked = await sql<{ offset: string }[]>`
      SELECT "offset" FROM parked_events WHERE view = ${view} ORDER BY "offset"`;
    report.views[view] = {
      duplicates: readModel.duplicates.slice(0, 20),
      missing: readModel.missing.slice(0, 20),
      unknown: readModel.unknown.slice(0, 20),
      outOfOrder: readModel.outOfOrder
        .map((stream) => `${stream.deciderId}: ${stream.offsets.join()}`)
        .slice(0, 20),
      foldMismatches: (await inspectFold(sql, view)).slice(0, 20),
      notAcked: notAcked.slice(0, 20).map((row) => ({
        deciderId: row.decider_id,
        lastOffset: Number(row.last_offset),
        head: Number(row.head),
        leased: row.leased,
      })),
      parked: parked.map((row) => Number(row.offset)),
    };
  }
  return report;
}

/** Waits until every view has every event of the log in its read model. */
export async function waitForViews(
  sql: postgres.Sql,
  views: readonly string[],
  options: { timeoutMs: number; explain?: () => string },
): Promise<void> {
  for (const view of views) {
    await waitUntil(() => caughtUp(sql, view), {
      timeoutMs: options.timeoutMs,
      what: `view ${view} to catch up`,
      explain: async () => `${await describeView(sql, view)}\n${options.explain?.() ?? ''}`,
    });
  }
}
