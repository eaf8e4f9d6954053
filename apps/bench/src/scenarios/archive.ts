/**
 * R1: what archiving buys the hot path. Two databases hold the same open part of the log (2,000 streams of 5 events,
 * every one handled by a view); one also held 18,000 closed streams of 5 events (90% of its log), handled, then
 * archived (archive_closed_streams) and vacuumed as autovacuum would. Reported: the size of the tables and indexes
 * that appends and leases use (events, locks) before and after archiving, after plain VACUUM (the space is reused by
 * new appends, not returned) and after VACUUM FULL (returned: a maintenance window, or pg_repack online). Measured,
 * alternating between the two databases: appends (8 writers, append_event) and leases (4 consumers draining a
 * backlog of 2,000 new events with lease_events and ack_events). Target: within 10% of the database that never held
 * the archived part. A quick run uses a tenth of the sizes.
 */
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { type BenchContext, type Figure, median } from '../context.js';

const view = 'bench-view';

interface Sizes {
  events: number;
  locks: number;
}

async function sizes(sql: postgres.Sql): Promise<Sizes> {
  const [row] = await sql<{ events: string; locks: string }[]>`
    SELECT pg_total_relation_size('events') AS events, pg_total_relation_size('locks') AS locks`;
  return { events: Number(row?.events), locks: Number(row?.locks) };
}

/** Writes `streams` streams of `perStream` events named `prefix-n`, closed (the last event final) when `closed`. */
async function writeStreams(
  sql: postgres.Sql,
  prefix: string,
  streams: number,
  perStream: number,
  closed: boolean,
) {
  await sql`INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id, final)
    SELECT 'Happened', md5(${prefix} || s || '-' || i)::uuid, 'Bench', ${prefix} || '-' || s, jsonb_build_object('n', i),
           gen_random_uuid(), CASE WHEN i = 1 THEN NULL ELSE md5(${prefix} || s || '-' || (i - 1))::uuid END,
           ${closed} AND i = ${perStream}
    FROM generate_series(1, ${perStream}) AS i, generate_series(1, ${streams}) AS s
    ORDER BY i, s`;
}

/** The view reads everything there is, and every stream is handled (as acknowledgements leave a lock row). */
async function handleEverything(sql: postgres.Sql) {
  while (Number((await sql<{ n: number }[]>`SELECT advance_view(${view}, 20000) AS n`)[0]?.n) > 0);
  await sql`UPDATE locks SET last_offset = "offset" WHERE view = ${view} AND last_offset < "offset"`;
}

async function build(
  url: string,
  options: { archived: number; hot: number; perStream: number },
  log: (message: string) => void,
): Promise<{ before?: Sizes; vacuumed?: Sizes; full?: Sizes; hot: Sizes }> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`SELECT * FROM register_view(${view}, 100, 'epoch'::timestamp)`;
    if (options.archived > 0) await writeStreams(sql, 'old', options.archived, options.perStream, true);
    await writeStreams(sql, 'hot', options.hot, options.perStream, false);
    await handleEverything(sql);
    await sql`VACUUM ANALYZE events`;
    await sql`VACUUM ANALYZE locks`;
    if (options.archived === 0) return { hot: await sizes(sql) };
    const before = await sizes(sql);
    let moved = 0;
    const started = performance.now();
    for (;;) {
      const [row] = await sql<{ n: number }[]>`SELECT archive_closed_streams(now(), 5000) AS n`;
      if (!row?.n) break;
      moved += row.n;
    }
    log(`R1: archived ${moved} streams in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    await sql`VACUUM ANALYZE events`;
    await sql`VACUUM ANALYZE locks`;
    const vacuumed = await sizes(sql);
    // VACUUM FULL on a copy of the figures only: the timings below run on the plainly vacuumed tables, as a live
    // system would after autovacuum. (Sizes after VACUUM FULL are measured on a clone of this database.)
    return { before, vacuumed, hot: vacuumed };
  } finally {
    await sql.end();
  }
}

/** The sizes this database would have after VACUUM FULL, measured on a copy of it (CREATE DATABASE … TEMPLATE). */
async function sizesAfterVacuumFull(ctx: BenchContext, url: string): Promise<Sizes> {
  const source = new URL(url).pathname.slice(1);
  const copy = `${source}_full`;
  const admin = postgres(ctx.adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${copy}" TEMPLATE "${source}"`);
    const copyUrl = new URL(url);
    copyUrl.pathname = `/${copy}`;
    const sql = postgres(copyUrl.toString(), { max: 1, onnotice: () => {} });
    try {
      await sql`VACUUM FULL events`;
      await sql`VACUUM FULL locks`;
      return await sizes(sql);
    } finally {
      await sql.end();
    }
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS "${copy}" WITH (FORCE)`);
    await admin.end();
  }
}

/** Appends for `ms`: 8 writers, each on a new stream of its own, one event per append_event. Events per second. */
async function appendRate(url: string, ms: number): Promise<number> {
  const sql = postgres(url, { max: 8, onnotice: () => {} });
  try {
    const deadline = Date.now() + ms;
    let appended = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const id = `append-${randomUUID()}`;
        let previous: string | null = null;
        while (Date.now() < deadline) {
          const eventId = randomUUID();
          await sql`SELECT 1 FROM append_event('Happened', ${eventId}, 'Bench', ${id}, '{"n": 1}', ${randomUUID()}, ${previous})`;
          previous = eventId;
          appended++;
        }
      }),
    );
    return appended / (ms / 1000);
  } finally {
    await sql.end();
  }
}

/** Writes a backlog of `streams` new streams of 4 events, then drains it with 4 consumers. Events per second. */
async function leaseRate(url: string, streams: number): Promise<number> {
  const sql = postgres(url, { max: 5, onnotice: () => {} });
  try {
    const backlog = streams * 4;
    await writeStreams(sql, `backlog-${randomUUID()}`, streams, 4, false);
    const started = performance.now();
    let acked = 0;
    const deadline = Date.now() + 120_000;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (acked < backlog && Date.now() < deadline) {
          const leased = await sql<{ lease_id: string; decider_id: string; offset: string }[]>`
            SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 10, 100, 60)`;
          if (leased.length === 0) {
            await new Promise((resolve) => setTimeout(resolve, 2));
            continue;
          }
          const last = new Map(leased.map((row) => [row.decider_id, row]));
          for (const row of last.values())
            await sql`SELECT 1 FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}, ${row.offset})`;
          acked += leased.length;
        }
      }),
    );
    if (acked < backlog) throw new Error(`R1: ${acked} of ${backlog} events drained in 120 s`);
    return backlog / ((performance.now() - started) / 1000);
  } finally {
    await sql.end();
  }
}

export async function archiveScenarios(ctx: BenchContext): Promise<Figure[]> {
  const scale = ctx.quick ? 10 : 1;
  const shape = { archived: 18_000 / scale, hot: 2_000 / scale, perStream: 5 };
  ctx.log(
    `R1: two logs with the same ${shape.hot * shape.perStream} open events, one with ${shape.archived * shape.perStream} more, archived`,
  );
  const hotUrl = await ctx.freshDatabase('archive-hot');
  const archivedUrl = await ctx.freshDatabase('archive-archived');
  const hotOnly = await build(hotUrl, { ...shape, archived: 0 }, ctx.log);
  const archived = await build(archivedUrl, shape, ctx.log);
  const full = await sizesAfterVacuumFull(ctx, archivedUrl);
  const rates = {
    appends: { hot: [] as number[], archived: [] as number[] },
    leases: { hot: [] as number[], archived: [] as number[] },
  };
  const backlogStreams = 500 / scale;
  for (let round = 0; round < ctx.rounds; round++) {
    rates.appends.hot.push(await appendRate(hotUrl, ctx.durationMs));
    rates.appends.archived.push(await appendRate(archivedUrl, ctx.durationMs));
    rates.leases.hot.push(await leaseRate(hotUrl, backlogStreams));
    rates.leases.archived.push(await leaseRate(archivedUrl, backlogStreams));
  }
  const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
  const before = archived.before as Sizes;
  const vacuumed = archived.vacuumed as Sizes;
  const figure = (kind: 'appends' | 'leases', what: string): Figure => {
    const value = median(rates[kind].archived);
    const baseline = median(rates[kind].hot);
    return {
      scenario: 'R1',
      case: what,
      unit: 'events/s',
      value,
      baseline: { label: 'a log that never held the archived 90%', value: baseline },
      ratio: value / baseline,
      target: { description: 'within 10% (≥ 0.9×)', met: value / baseline >= 0.9 },
    };
  };
  const size = (table: keyof Sizes, what: string): Figure => ({
    scenario: 'R1',
    case: `${what}, 90% of the log archived, after VACUUM FULL`,
    unit: 'MB',
    value: full[table] / 2 ** 20,
    baseline: { label: 'before archiving', value: before[table] / 2 ** 20 },
    ratio: full[table] / before[table],
    note: `a log of only the open part: ${mb(hotOnly.hot[table])}; after a plain VACUUM the files keep their size (${mb(vacuumed[table])}), and new appends reuse the space`,
  });
  return [
    size('events', 'events, with its indexes'),
    size('locks', "locks (the view's lock rows), with its indexes"),
    figure('appends', 'append_event, 8 writers, 90% of the log archived (then plain VACUUM)'),
    figure(
      'leases',
      `lease_events + ack_events, 4 consumers draining ${(backlogStreams * 4).toLocaleString('en-US')} new events, 90% of the log archived`,
    ),
  ];
}
