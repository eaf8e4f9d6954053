/**
 * What the scenario suite (`*.scenario.ts`) shares: the Counter events, the read-model tables and the handler that
 * writes them, worker processes (worker-process.ts) to start and kill, producers that append many streams at once,
 * and the invariants checked at the end of every scenario (checkInvariants).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineEvents, type EventStore, event, FstoreError } from '@fstore/store';
import { sql as drizzleSql } from 'drizzle-orm';
import type postgres from 'postgres';
import type { ProjectedEvent, Transaction } from '../projection.js';

/**
 * A counter per stream: `Incremented` carries the counter's new value (1, 2, 3… along the stream when every writer
 * decided on the latest state), `Closed` is final and ends the stream.
 */
export const counterEvents = defineEvents('Counter', {
  Incremented: event<{ n: number }>(),
  Closed: event<{ count: number }>({ final: true }),
});

export type CounterEvent = ProjectedEvent<[typeof counterEvents]>;

/**
 * The read models the workers write. `projected`: one row per delivery, not unique on purpose, so that a second
 * delivery would show. `counter_totals`: a fold per stream (events, sum of n, last offset, closed, whether each
 * event came after the one before), which must equal the same fold of the log (inspectFold).
 */
export async function createReadModel(sql: postgres.Sql): Promise<void> {
  await sql`
    CREATE TABLE IF NOT EXISTS projected (
      seq        bigserial,
      view       text NOT NULL,
      decider_id text NOT NULL,
      "offset"   bigint NOT NULL,
      handled_by text NOT NULL,
      handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`;
  await sql`
    CREATE TABLE IF NOT EXISTS counter_totals (
      view        text NOT NULL,
      decider_id  text NOT NULL,
      events      int NOT NULL,
      total       bigint NOT NULL,
      last_offset bigint NOT NULL,
      closed      boolean NOT NULL,
      in_order    boolean NOT NULL,
      PRIMARY KEY (view, decider_id)
    )`;
}

/** The workers' handler: writes both read models in the projection's transaction. */
export async function projectCounterEvent(
  tx: Transaction,
  view: string,
  handledBy: string,
  event: CounterEvent,
): Promise<void> {
  await tx.execute(
    drizzleSql`INSERT INTO projected (view, decider_id, "offset", handled_by) VALUES (${view}, ${event.deciderId}, ${event.offset}, ${handledBy})`,
  );
  const n = event.type === 'Incremented' ? event.data.n : 0;
  await tx.execute(drizzleSql`
    INSERT INTO counter_totals AS t (view, decider_id, events, total, last_offset, closed, in_order)
    VALUES (${view}, ${event.deciderId}, 1, ${n}, ${event.offset}, ${event.final}, true)
    ON CONFLICT (view, decider_id) DO UPDATE
      SET events      = t.events + 1,
          total       = t.total + EXCLUDED.total,
          last_offset = EXCLUDED.last_offset,
          closed      = t.closed OR EXCLUDED.closed,
          in_order    = t.in_order AND EXCLUDED.last_offset > t.last_offset AND NOT t.closed`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `count` stream ids: prefix-00, prefix-01, … */
export const streamIds = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, index) => `${prefix}-${String(index).padStart(2, '0')}`);

/** A URL with `application_name` set, so that a scenario can find (and terminate) these sessions in pg_stat_activity. */
export function withApplicationName(url: string, applicationName: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', applicationName);
  return parsed.toString();
}

/** Rejects with an error naming `what` if `promise` has not settled within timeoutMs. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// --- worker processes ----------------------------------------------------------------------------------------

export interface WorkerOptions {
  url: string;
  view: string;
  name: string;
  concurrency?: number;
  leaseSeconds?: number;
  /** The projection's maxBatchSeconds (default 15 here). */
  maxBatchSeconds?: number;
  batchSize?: number;
  handlerDelayMs?: number;
  hangAtOffset?: number;
  /** Block the worker's event loop (a busy wait: no timer, no renewal) for blockMs inside the handler of this event. */
  blockAtOffset?: number;
  blockMs?: number;
  pollIntervalMs?: number;
}

export interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Standard output so far, line by line. */
  readonly lines: string[];
  /** Standard error so far (the worker's JSON logs). */
  stderr(): string;
  /**
   * Resolves with the first line from line number `from` on (default 0: already printed or to come) that matches;
   * rejects after timeoutMs, or when the worker exits first.
   */
  waitForLine(pattern: RegExp, options?: { timeoutMs?: number; from?: number }): Promise<RegExpMatchArray>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly alive: boolean;
}

const tsx = createRequire(import.meta.url).resolve('tsx');
const workerScript = fileURLToPath(new URL('./worker-process.ts', import.meta.url));

export function startWorker(options: WorkerOptions): WorkerProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: options.url,
    VIEW: options.view,
    WORKER_NAME: options.name,
    CONCURRENCY: String(options.concurrency ?? 4),
    LEASE_SECONDS: String(options.leaseSeconds ?? 2),
    // Scenario workers end a hung batch's session after 15 s (the product's default is ten minutes): a session cut
    // mid-write can leave postgres.js waiting for ever (see faults.scenario.ts), and the checks wait less than that.
    MAX_BATCH_SECONDS: String(options.maxBatchSeconds ?? 15),
    BATCH_SIZE: String(options.batchSize ?? 100),
    HANDLER_DELAY_MS: String(options.handlerDelayMs ?? 0),
    HANG_AT_OFFSET: options.hangAtOffset === undefined ? '' : String(options.hangAtOffset),
    BLOCK_AT_OFFSET: options.blockAtOffset === undefined ? '' : String(options.blockAtOffset),
    BLOCK_MS: String(options.blockMs ?? 0),
    POLL_INTERVAL_MS: String(options.pollIntervalMs ?? 200),
  };
  const child = spawn(process.execPath, ['--conditions=@fstore/source', '--import', tsx, workerScript], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`worker ${options.name} did not start`);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  let alive = true;
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    for (const waiter of waiters) waiter();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    // Keep the tail only: a worker that logs in a loop must not eat the test's memory.
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      alive = false;
      for (const waiter of waiters) waiter();
      resolve({ code, signal });
    });
  });
  return {
    name: options.name,
    pid: child.pid,
    child,
    lines,
    stderr: () => stderr,
    get alive() {
      return alive;
    },
    exited,
    waitForLine(pattern, { timeoutMs = 30_000, from = 0 } = {}) {
      return new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        let scanned = from;
        const check = () => {
          for (; scanned < lines.length; scanned++) {
            const match = lines[scanned]?.match(pattern);
            if (match) return finish(() => resolve(match));
          }
          if (!alive) {
            finish(() =>
              reject(
                new Error(
                  `worker ${options.name} exited before printing ${pattern}:\n${stderr.slice(-4000)}`,
                ),
              ),
            );
          }
        };
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(
                  `worker ${options.name} did not print ${pattern} within ${timeoutMs} ms; ${lines.length} lines, last: ${lines.slice(-10).join(' | ')}; other: ${lines.filter((line) => !line.startsWith('handled ')).join(' | ')}\n${stderr.slice(-4000)}`,
                ),
              ),
            ),
          timeoutMs,
        );
        waiters.add(check);
        check();
      });
    },
  };
}

/** SIGTERM, then the exit (SIGKILL after timeoutMs). */
export async function stopWorker(worker: WorkerProcess, timeoutMs = 15_000) {
  if (!worker.alive) return worker.exited;
  worker.child.kill('SIGTERM');
  const timer = setTimeout(() => worker.child.kill('SIGKILL'), timeoutMs);
  try {
    return await worker.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** What a failed scenario prints: every worker's last log lines. */
export function workerLogs(workers: readonly WorkerProcess[]): string {
  return workers
    .map((worker) => {
      const tail = worker.stderr().split('\n').slice(-40).join('\n');
      const stdout = worker.lines.slice(-10).join(' | ');
      return `--- ${worker.name} (pid ${worker.pid}${worker.alive ? '' : ', exited'}), ${worker.lines.length} stdout lines, last: ${stdout}\nstderr tail:\n${tail}`;
    })
    .join('\n');
}

// --- producers -------------------------------------------------------------------------------------------------

export interface ProduceOptions {
  /** The streams (decider ids) to append to, all at once, each from its own loop. */
  streams: readonly string[];
  eventsPerStream: number;
  /** Up to this many events per append (one command), chosen at random. Default 1. */
  maxEventsPerAppend?: number;
  /** A pause between two appends of one stream. Default 0. */
  pauseMs?: number;
  /** Retry an append that failed on a connection error, with the same event and command ids. Default false. */
  retryConnectionErrors?: boolean;
  /** Give up (throw) when an append has not succeeded by then. */
  deadline: number;
  /**
   * Once a stream has its eventsPerStream, keep appending to it while this returns true (for scenarios that need
   * appends to last until something else is done). Default: stop at eventsPerStream.
   */
  keepGoing?: () => boolean;
}

export interface Produced {
  /** Per stream, the ids of the events the store acknowledged, in the order appended. */
  acknowledged: Map<string, string[]>;
  /** Appends retried after a connection error. */
  retries: number;
  /** The messages of the errors that were retried, counted (for the report). */
  retriedErrors: Map<string, number>;
}

/**
 * Is this a failure of the connection (or of a server going away), after which a retry is the right move? Drizzle
 * wraps the driver's error (DrizzleQueryError), so the causes are looked at too.
 */
export function isConnectionError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (current instanceof FstoreError) return false;
    const code = (current as { code?: unknown }).code;
    if (
      typeof code === 'string' &&
      ([
        'ECONNREFUSED',
        'ECONNRESET',
        'EPIPE',
        'ETIMEDOUT',
        'CONNECTION_CLOSED',
        'CONNECTION_ENDED',
        'CONNECTION_DESTROYED',
        'CONNECT_TIMEOUT',
      ].includes(code) ||
        // connection_exception; admin_shutdown, crash_shutdown, cannot_connect_now
        /^08...$|^57P0[123]$/.test(code))
    ) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** The code and message of the driver's error under Drizzle's wrapping, for counting retried errors. */
function describeCause(error: unknown): string {
  let current = error;
  while ((current as { cause?: unknown })?.cause) current = (current as { cause?: unknown }).cause;
  const code = (current as { code?: unknown })?.code;
  return `${typeof code === 'string' ? code : '?'}: ${current instanceof Error ? current.message : String(current)}`;
}

/** Appends `eventsPerStream` Counter events to every stream, the streams concurrently, and records what succeeded. */
export async function produce(
  store: EventStore<typeof counterEvents>,
  options: ProduceOptions,
): Promise<Produced> {
  const produced: Produced = { acknowledged: new Map(), retries: 0, retriedErrors: new Map() };
  const maxPerAppend = options.maxEventsPerAppend ?? 1;
  await Promise.all(
    options.streams.map(async (stream) => {
      const acknowledged: string[] = [];
      produced.acknowledged.set(stream, acknowledged);
      while (acknowledged.length < options.eventsPerStream || options.keepGoing?.()) {
        const count = Math.min(
          Math.max(options.eventsPerStream - acknowledged.length, 1),
          1 + Math.floor(Math.random() * maxPerAppend),
        );
        const ids = Array.from({ length: count }, () => randomUUID());
        const batch = ids.map((eventId, index) => ({
          type: 'Incremented' as const,
          data: { n: acknowledged.length + index + 1 },
          eventId,
        }));
        const expectedLastEventId = acknowledged.at(-1) ?? null;
        const commandId = randomUUID();
        for (let attempt = 1; ; attempt++) {
          try {
            const stored = await store.append(stream, batch, { expectedLastEventId, commandId });
            const storedIds = stored.map((stored) => stored.eventId);
            if (storedIds.join() !== ids.join()) {
              throw new Error(
                `stream ${stream}: appended ${ids.join()} but the store answered ${storedIds.join()}`,
              );
            }
            acknowledged.push(...ids);
            break;
          } catch (error) {
            if (!options.retryConnectionErrors || !isConnectionError(error)) throw error;
            if (Date.now() > options.deadline) {
              throw new Error(`stream ${stream}: still failing after ${attempt} attempts`, { cause: error });
            }
            produced.retries++;
            const key = describeCause(error).slice(0, 120);
            produced.retriedErrors.set(key, (produced.retriedErrors.get(key) ?? 0) + 1);
            await sleep(Math.min(500, 25 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
          }
        }
        if (options.pauseMs) await sleep(options.pauseMs * (0.5 + Math.random()));
      }
    }),
  );
  return produced;
}

// --- waiting and invariants ------------------------------------------------------------------------------------

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

// --- the invariants every scenario ends with ---------------------------------------------------------------------

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
