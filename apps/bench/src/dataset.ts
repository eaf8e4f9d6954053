/** Backlogs for the streaming benchmarks, written by one INSERT … SELECT each (every row still passes the triggers). */
import postgres from 'postgres';

export interface Backlog {
  view: string;
  /** When the view starts reading: reset_view(view, startAt) restores the backlog between rounds. */
  startAt: string;
  pending: number;
  /** Streams the view had read before the backlog (one event each, written first). */
  caughtUp: number;
}

/**
 * Writes `caughtUpStreams` one-event streams the view has already read, then registers the view, then writes
 * `pendingStreams` streams of `eventsPerStream` chained events each, all unread.
 */
export async function writeBacklog(
  url: string,
  options: { caughtUpStreams?: number; pendingStreams: number; eventsPerStream: number; view?: string },
): Promise<Backlog> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const view = options.view ?? 'bench-view';
  try {
    if (options.caughtUpStreams) {
      await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
        SELECT 'Happened', gen_random_uuid(), 'Bench', 'quiet-' || s, '{"n": 0}', gen_random_uuid(), NULL
        FROM generate_series(1, ${options.caughtUpStreams}) AS s`;
    }
    const [registered] = await sql<{ start_at: string }[]>`SELECT start_at::text FROM register_view(${view})`;
    await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
      SELECT 'Happened', md5(${view} || s || '-' || i)::uuid, 'Bench', ${view} || '-' || s, jsonb_build_object('n', i),
             gen_random_uuid(), CASE WHEN i = 1 THEN NULL ELSE md5(${view} || s || '-' || (i - 1))::uuid END
      FROM generate_series(1, ${options.eventsPerStream}) AS i, generate_series(1, ${options.pendingStreams}) AS s
      ORDER BY i, s`;
    await sql`VACUUM ANALYZE locks`;
    await sql`ANALYZE events`;
    return {
      view,
      startAt: registered?.start_at ?? '',
      pending: options.pendingStreams * options.eventsPerStream,
      caughtUp: options.caughtUpStreams ?? 0,
    };
  } finally {
    await sql.end();
  }
}

/**
 * Puts the view back to its backlog (every pending event unread again). Since migration 0010 lock rows appear when
 * consumers advance the view's frontier: the caught-up streams are read into lock rows here, as appends used to
 * make them, so that only the pending events are left for the consumers (and their advancing is measured).
 */
export async function restoreBacklog(url: string, backlog: Backlog) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT 1 FROM reset_view(${backlog.view}, ${backlog.startAt}::timestamp)`;
    if (backlog.caughtUp > 0 && (await hasFrontiers(sql)))
      await sql`SELECT advance_view(${backlog.view}, ${backlog.caughtUp})`;
    await sql`VACUUM ANALYZE locks`;
  } finally {
    await sql.end();
  }
}

/** Whether the schema has view frontiers (migration 0010 and later), or lock rows written by appends (before). */
async function hasFrontiers(sql: postgres.Sql): Promise<boolean> {
  const [row] = await sql<
    { present: boolean }[]
  >`SELECT to_regclass('view_frontiers') IS NOT NULL AS present`;
  return row?.present ?? false;
}

/** Resolves when the view has nothing left to read (nothing past its frontier, no pending lock row), or at the deadline. */
export async function drained(url: string, view: string, deadline: number) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const frontiers = await hasFrontiers(sql);
    while (Date.now() < deadline) {
      const [row] = frontiers
        ? await sql<{ n: number }[]>`
            SELECT (SELECT count(*)::int FROM locks WHERE view = ${view} AND last_offset < "offset")
                 + (SELECT count(*)::int FROM (SELECT 1 FROM events e, view_frontiers f
                      WHERE f.view = ${view} AND (e.transaction_id, e."offset") > (f.transaction_id, f."offset")
                      LIMIT 1) past) AS n`
        : await sql<{ n: number }[]>`
            SELECT count(*)::int AS n FROM locks WHERE view = ${view} AND last_offset < "offset"`;
      if (row?.n === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await sql.end();
  }
}
