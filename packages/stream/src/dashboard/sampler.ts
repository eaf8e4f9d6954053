/**
 * What the dashboard shows, read from the SQL API once per interval for every open page: list_parked_events(), and
 * one statement for view_lag() (whose cost follows the backlog, not the number of streams), the log's newest offset,
 * the tables' sizes and the events each view gained since the last look. Two statements a second whatever the
 * number of pages, and none while no page is open; view_status(), which counts every lock row and archived stream,
 * once a minute, for the archived counts. Keeps the last minutes of each view's figures for the charts.
 */
import type { Database } from '@fstore/store';
import { queryRows } from '@fstore/store/internal';
import { sql } from 'drizzle-orm';
import { listParkedEvents, toViewLag, viewStatus } from '../functions.js';

export interface ViewSample {
  /** Seconds since the epoch. */
  t: number;
  eventsBehind: number;
  /** Age of the oldest unread event, in seconds; null when caught up. */
  oldestUnreadSeconds: number | null;
  /** Events handled per second since the sample before (null for the first). */
  handledPerSecond: number | null;
}

export interface ViewState {
  view: string;
  pendingStreams: number;
  leasedStreams: number;
  stoppedStreams: number;
  /** Pending streams neither leased nor stopped: waiting for a consumer, or for a retry's delay. */
  waitingStreams: number;
  parkedEvents: number;
  subscribedDeciders: string[] | null;
  subscribedEvents: string[] | null;
  archivedStreams: number;
  history: ViewSample[];
}

export interface ParkedRow {
  view: string;
  deciderId: string;
  offset: number;
  eventId: string;
  error: string;
  attempts: number;
  streamStopped: boolean;
  parkedAt: string;
  retryRequested: boolean;
}

export interface DatabaseState {
  /** Events appended per second over the last interval (offsets the log's head moved by). */
  appendedPerSecond: number | null;
  history: { t: number; appendedPerSecond: number | null }[];
  /** Bytes, tables with their indexes. */
  sizes: {
    events: number;
    archivedEvents: number;
    locks: number;
    viewFrontiers: number;
    parkedEvents: number;
  };
}

export interface DashboardState {
  sampledAt: string;
  views: ViewState[];
  parked: ParkedRow[];
  database: DatabaseState;
  /** Whether the retry and discard buttons work (the dashboard was started with actions on). */
  actions: boolean;
  /** The views the page may rebuild (with actions on: those the dashboard was told how to empty). */
  rebuildable: string[];
}

interface Previous {
  t: number;
  head: number;
  behind: Map<string, number>;
}

export interface Sampler {
  /** The newest state; samples first if there is none yet. */
  current(): Promise<DashboardState>;
  /** Samples now (after an action), and tells the listeners. */
  refresh(): Promise<DashboardState>;
  /** Called with every new state; returns how to stop listening. Sampling runs while someone listens. */
  listen(listener: (state: DashboardState) => void): () => void;
  close(): void;
}

export function createSampler(
  db: Database,
  options: { intervalMs: number; historySeconds: number; actions: boolean; rebuildable?: string[] },
): Sampler {
  const listeners = new Set<(state: DashboardState) => void>();
  const histories = new Map<string, ViewSample[]>();
  const databaseHistory: DatabaseState['history'] = [];
  let previous: Previous | undefined;
  let latest: DashboardState | undefined;
  let inFlight: Promise<DashboardState> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  /** Archived streams per view, from view_status() once a minute. */
  let archived = new Map<string, number>();
  let archivedAt = 0;

  const keep = <T extends { t: number }>(history: T[], now: number) => {
    while (history.length > 0 && (history[0] as T).t < now - options.historySeconds) history.shift();
  };

  async function sample(): Promise<DashboardState> {
    const now = Date.now() / 1000;
    // After a pause (no page open), the events since the last look could be many: start over instead of counting them.
    if (previous && now - previous.t > 10) previous = undefined;
    // A literal, not a parameter: a generic plan of a prepared statement would scan the whole log for `offset > $1`.
    const since = Math.max(0, Math.trunc(previous?.head ?? 0));
    if (now - archivedAt >= 60) {
      archived = new Map((await viewStatus(db)).map((row) => [row.view, row.archivedStreams]));
      archivedAt = now;
    }
    // One statement, so one snapshot: the lag, the log's newest offset and the events each view gained since the
    // last look all see the same commits (else an event would count as gained in one look and behind in another).
    const [parked, [figures]] = await Promise.all([
      listParkedEvents(db),
      queryRows(
        db,
        sql`SELECT (SELECT coalesce(jsonb_agg(to_jsonb(l)), '[]') FROM view_lag() l) AS lag,
                   coalesce((SELECT max(e."offset") FROM events e), 0) AS head,
                   pg_total_relation_size('events') AS events,
                   coalesce(pg_total_relation_size(to_regclass('archived_events')), 0) AS archived_events,
                   pg_total_relation_size('locks') AS locks,
                   pg_total_relation_size('view_frontiers') AS view_frontiers,
                   pg_total_relation_size('parked_events') AS parked_events,
                   (SELECT coalesce(jsonb_object_agg(v.view, (SELECT count(*)
                                                             FROM events e
                                                             WHERE e."offset" > ${sql.raw(String(since))}
                                                               AND (v.subscribed_deciders IS NULL OR e.decider = ANY (v.subscribed_deciders))
                                                               AND (v.subscribed_events IS NULL OR e.event = ANY (v.subscribed_events)))),
                                     '{}')
                    FROM views v
                    WHERE ${sql.raw(String(previous !== undefined))}) AS gained`,
      ),
    ]);
    const status = ((figures?.lag ?? []) as Record<string, unknown>[]).map(toViewLag);
    const head = Number(figures?.head ?? 0);
    const gained = (figures?.gained ?? {}) as Record<string, number>;
    const elapsed = previous ? Math.max(0.001, now - previous.t) : 0;
    const views: ViewState[] = status.map((row) => {
      const history = histories.get(row.view) ?? [];
      histories.set(row.view, history);
      const before = previous?.behind.get(row.view);
      // Handled = what was behind, plus what arrived, minus what is behind now.
      const handled =
        previous && before !== undefined
          ? Math.max(0, before + Number(gained[row.view] ?? 0) - row.eventsBehind) / elapsed
          : null;
      history.push({
        t: now,
        eventsBehind: row.eventsBehind,
        oldestUnreadSeconds: row.oldestUnackedAt
          ? Math.max(0, now - row.oldestUnackedAt.getTime() / 1000)
          : null,
        handledPerSecond: handled,
      });
      keep(history, now);
      return {
        view: row.view,
        pendingStreams: row.pendingStreams,
        leasedStreams: row.leasedStreams,
        stoppedStreams: row.stoppedStreams,
        waitingStreams: Math.max(0, row.pendingStreams - row.leasedStreams - row.stoppedStreams),
        parkedEvents: row.parkedEvents,
        subscribedDeciders: row.subscribedDeciders,
        subscribedEvents: row.subscribedEvents,
        archivedStreams: archived.get(row.view) ?? 0,
        history: [...history],
      };
    });
    for (const view of histories.keys()) if (!status.some((row) => row.view === view)) histories.delete(view);
    const appendedPerSecond = previous ? Math.max(0, head - previous.head) / elapsed : null;
    databaseHistory.push({ t: now, appendedPerSecond });
    keep(databaseHistory, now);
    previous = { t: now, head, behind: new Map(status.map((row) => [row.view, row.eventsBehind])) };
    latest = {
      sampledAt: new Date(now * 1000).toISOString(),
      views,
      parked: parked.map((p) => ({
        view: p.view,
        deciderId: p.deciderId,
        offset: p.offset,
        eventId: p.eventId,
        error: p.error,
        attempts: p.attempts,
        streamStopped: p.streamStopped,
        parkedAt: p.parkedAt.toISOString(),
        retryRequested: p.retryRequestedAt !== null,
      })),
      database: {
        appendedPerSecond,
        history: [...databaseHistory],
        sizes: {
          events: Number(figures?.events ?? 0),
          archivedEvents: Number(figures?.archived_events ?? 0),
          locks: Number(figures?.locks ?? 0),
          viewFrontiers: Number(figures?.view_frontiers ?? 0),
          parkedEvents: Number(figures?.parked_events ?? 0),
        },
      },
      actions: options.actions,
      rebuildable: options.rebuildable ?? [],
    };
    for (const listener of listeners) listener(latest);
    return latest;
  }

  /** One sample at a time: a caller that comes while one runs gets its result. */
  function sampleOnce(): Promise<DashboardState> {
    inFlight ??= sample().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  function schedule() {
    if (closed || listeners.size === 0 || timer) return;
    timer = setTimeout(async () => {
      timer = undefined;
      // A failed look (the database restarting) is tried again at the next tick; the page shows the last state's age.
      await sampleOnce().catch(() => {});
      schedule();
    }, options.intervalMs);
    timer.unref();
  }

  return {
    current: () => (latest ? Promise.resolve(latest) : sampleOnce()),
    refresh: () => sampleOnce(),
    listen(listener) {
      listeners.add(listener);
      schedule();
      return () => {
        listeners.delete(listener);
      };
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      listeners.clear();
    },
  };
}
