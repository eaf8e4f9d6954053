/**
 * What the scenario suite (`*.scenario.ts`) shares: the Counter events, the read-model table, worker processes
 * (worker-process.ts) to start and kill, producers that append many streams at once, and the invariants checked
 * at the end of every scenario.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineEvents, type EventStore, event, FstoreError } from '@fstore/store';
import type postgres from 'postgres';

export const counterEvents = defineEvents('Counter', {
  Incremented: event<{ n: number }>(),
});

/** The read model the workers write: not unique on purpose, so that a second delivery would show. */
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
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// --- worker processes ----------------------------------------------------------------------------------------

export interface WorkerOptions {
  url: string;
  view: string;
  name: string;
  concurrency?: number;
  leaseSeconds?: number;
  batchSize?: number;
  handlerDelayMs?: number;
  hangAtOffset?: number;
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
    BATCH_SIZE: String(options.batchSize ?? 100),
    HANDLER_DELAY_MS: String(options.handlerDelayMs ?? 0),
    HANG_AT_OFFSET: options.hangAtOffset === undefined ? '' : String(options.hangAtOffset),
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
      while (acknowledged.length < options.eventsPerStream) {
        const count = Math.min(
          options.eventsPerStream - acknowledged.length,
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
  return JSON.stringify({ status, behind, parked }, null, 1);
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
