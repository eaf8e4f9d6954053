/**
 * Wake-ups that cost appends nothing: one probe of the log's head (`log_head()`, an index probe) per Drizzle database,
 * shared by every worker of the process that polls it. When the head moves, every one of them leases at once.
 * It is a read: appends pay no lock and no NOTIFY for it, only the server's CPU for one small query per interval.
 */
import type { Database } from '@fstore/store';
import { sql } from 'drizzle-orm';
import type { Logger } from './observability.js';

/**
 * How often the probe asks while the database answers. An event waits on average half of it before its workers
 * lease, so 15 ms keeps the commit-to-handler median near 10 ms (issue 11's L1: p50 <= 20 ms, p99 <= 100 ms) with
 * room for a loaded machine, for about 67 index probes a second per process and database: a fraction of a percent
 * of one core of the server.
 */
export const probeIntervalMs = 15;
/** How often it asks while the database fails: workers still poll on their own, so nothing waits on this. */
export const failingProbeIntervalMs = 1000;
/**
 * At most one warning in this long: a restarting server fails the pool's connections one by one, and the probe may
 * answer once in between; an outage is one line, not one per dead connection.
 */
export const failureWarningIntervalMs = 60_000;

export interface LogHeadWatch {
  /** Stops waking this subscriber; the last one to close stops the probe. Resolves at once. */
  close(): Promise<void>;
}

/** What the shared probe of a database has done: for tests and diagnostics. */
export interface LogHeadProbeStats {
  /** Workers (subscribers) sharing it now. */
  readonly subscribers: number;
  /** Probes sent (statements), answered or not. */
  readonly probes: number;
  /** Times the head moved and the subscribers were woken. */
  readonly wakeups: number;
  /** Probes that had to read the head (log_head()), because the snapshot had moved. */
  readonly headReads: number;
  /** Whether the last probe failed. */
  readonly failing: boolean;
}

class LogHeadProbe {
  readonly subscribers = new Map<object, { wake: () => void; logger: Logger }>();
  probes = 0;
  wakeups = 0;
  failing = false;
  /** When it last warned (performance.now()), and whether it did in this outage (to say when it is over). */
  private warnedAt: number | undefined;
  private warnedThisOutage = false;
  /** The head last seen ('' for an empty log); undefined until the first answer. */
  private head: string | undefined;
  /** The server's snapshot when the head was last read (see headQuery); undefined: read the head next time. */
  private snapshot: string | undefined;
  /** Times log_head() itself ran (the others were answered by the snapshot alone). */
  headReads = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  /** Settles when the first probe has answered or failed: a worker that leases after it misses no move of the head. */
  readonly ready: Promise<void>;

  /**
   * Prepared: the server parses and plans it once per connection (where the driver allows it), which is most of
   * what an unprepared statement of this size costs it.
   */
  private readonly query: ReturnType<typeof headQuery>;

  constructor(db: Database) {
    this.query = headQuery(db);
    this.ready = this.probe();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async probe(): Promise<void> {
    this.probes++;
    try {
      const [row] = await this.query.execute({ previous: this.snapshot ?? null });
      if (this.stopped) return;
      const head = row?.read ? String(row.head) : this.head;
      if (row?.read) this.headReads++;
      this.snapshot = String(row?.snapshot);
      // After an outage, wake everyone whatever the head says: their own polls failed and are backing off.
      const moved = this.failing || (this.head !== undefined && head !== this.head);
      if (this.warnedThisOutage) this.log('info', 'probing the head of the log again');
      this.warnedThisOutage = false;
      this.failing = false;
      this.head = head;
      if (moved) {
        this.wakeups++;
        for (const { wake } of this.subscribers.values()) wake();
      }
    } catch (error) {
      if (this.stopped) return;
      this.snapshot = undefined;
      // Once per outage: a database that is down for an hour must not write a line every second.
      const now = performance.now();
      if (!this.failing && (this.warnedAt === undefined || now - this.warnedAt >= failureWarningIntervalMs)) {
        this.warnedAt = now;
        this.warnedThisOutage = true;
        this.log('warn', 'probing the head of the log failed; workers poll on their own until it answers', {
          error: String(error),
          retryEveryMs: failingProbeIntervalMs,
        });
      }
      this.failing = true;
    } finally {
      if (!this.stopped) {
        this.timer = setTimeout(
          () => void this.probe(),
          this.failing ? failingProbeIntervalMs : probeIntervalMs,
        );
        // The probe serves workers; it must never be what keeps a process alive.
        this.timer.unref?.();
      }
    }
  }

  private log(level: 'info' | 'warn', message: string, fields?: Record<string, unknown>) {
    const [first] = this.subscribers.values();
    first?.logger[level](message, fields);
  }
}

/**
 * One statement: the server's snapshot (which transactions have ended), and log_head() only when it differs from the
 * one of the last read. The head can move only when a transaction that holds a transaction id ends, and that changes
 * the snapshot (its xmax when the id is taken, its list of running ids when it ends). An idle database (workers
 * polling, nothing written) changes nothing, and costs a probe about what `SELECT 1` costs instead of computing the
 * log's horizon. Transactions of other databases change the snapshot too: log_head() then runs for nothing.
 */
export function headQuery(db: Database) {
  const previous = sql`${sql.placeholder('previous')}::text`;
  return db
    .select({
      snapshot: sql<string>`s.snapshot`,
      read: sql<boolean>`s.snapshot IS DISTINCT FROM ${previous}`,
      head: sql<string | null>`CASE
          WHEN s.snapshot IS DISTINCT FROM ${previous} THEN
              coalesce((SELECT h.transaction_id::text || '/' || h."offset"::text FROM log_head() h), '')
          END`,
    })
    .from(sql`(SELECT pg_current_snapshot()::text AS snapshot) s`)
    .prepare('fstore_log_head_probe');
}

// Keyed by the Drizzle database object: workers that share it share the probe, and a database that is dropped
// takes its (stopped) probe with it.
const probes = new WeakMap<Database, LogHeadProbe>();

/**
 * Calls `onMove` whenever the head of the log moves, through the probe shared by the workers of `db` (started by the
 * first, stopped with the last). Resolves once the probe has read the head, so that a lease made after it cannot
 * miss an event that the probe would not report.
 */
export async function watchLogHead(db: Database, onMove: () => void, logger: Logger): Promise<LogHeadWatch> {
  let probe = probes.get(db);
  if (!probe) {
    probe = new LogHeadProbe(db);
    probes.set(db, probe);
  }
  const key = {};
  probe.subscribers.set(key, { wake: onMove, logger });
  const shared = probe;
  await shared.ready;
  return {
    async close() {
      if (!shared.subscribers.delete(key) || shared.subscribers.size > 0) return;
      shared.stop();
      if (probes.get(db) === shared) probes.delete(db);
    },
  };
}

/** The running probe of `db`, if a worker uses one. */
export function logHeadProbeStats(db: Database): LogHeadProbeStats | undefined {
  const probe = probes.get(db);
  return (
    probe && {
      subscribers: probe.subscribers.size,
      probes: probe.probes,
      wakeups: probe.wakeups,
      headReads: probe.headReads,
      failing: probe.failing,
    }
  );
}
