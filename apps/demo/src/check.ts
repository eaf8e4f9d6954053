/**
 * The demo's final check, read from the database: every event projected exactly once by its view and in stream
 * order, the read models agree with the log, and no command that succeeded lost its events.
 */
import type { Database } from '@fstore/store';
import { sql } from 'drizzle-orm';
import type { ProducerStats } from './producers.js';
import { views } from './setup.js';

async function one(db: Database, query: ReturnType<typeof sql>): Promise<number> {
  const result = (await db.execute(query)) as unknown as { n: number | string }[];
  return Number(result[0]?.n ?? 0);
}

export interface CheckResult {
  ok: boolean;
  lines: string[];
}

export async function check(db: Database, run: string, stats?: ProducerStats): Promise<CheckResult> {
  const lines: string[] = [];
  let ok = true;
  const expect = (passed: boolean, line: string) => {
    ok &&= passed;
    lines.push(`${passed ? 'ok  ' : 'FAIL'} ${line}`);
  };
  const prefix = `${run}-%`;
  for (const [view, decider] of [
    [views.restaurants, 'Restaurant'],
    [views.orders, 'Order'],
  ] as const) {
    const logged = await one(
      db,
      sql`SELECT count(*) AS n FROM events WHERE decider = ${decider} AND decider_id LIKE ${prefix}`,
    );
    const projected = await one(
      db,
      sql`SELECT count(*) AS n FROM demo.projected_events WHERE view = ${view} AND decider_id LIKE ${prefix}`,
    );
    const missing = await one(
      db,
      sql`SELECT count(*) AS n FROM events e WHERE e.decider = ${decider} AND e.decider_id LIKE ${prefix}
          AND NOT EXISTS (SELECT 1 FROM demo.projected_events p WHERE p.view = ${view} AND p."offset" = e."offset")`,
    );
    const duplicated = await one(
      db,
      sql`SELECT count(*) AS n FROM (SELECT "offset" FROM demo.projected_events WHERE view = ${view}
          AND decider_id LIKE ${prefix} GROUP BY "offset" HAVING count(*) > 1) d`,
    );
    const outOfOrder = await one(
      db,
      sql`SELECT count(*) AS n FROM (SELECT "offset" < lag("offset") OVER (PARTITION BY decider_id ORDER BY seq) AS back
          FROM demo.projected_events WHERE view = ${view} AND decider_id LIKE ${prefix}) x WHERE back`,
    );
    expect(
      missing === 0 && duplicated === 0 && projected === logged,
      `${view}: ${logged} events in the log, ${projected} projected: ${missing} missing, ${duplicated} twice`,
    );
    expect(outOfOrder === 0, `${view}: every stream projected in offset order (${outOfOrder} out of order)`);
  }
  const placedInLog = await one(
    db,
    sql`SELECT count(*) AS n FROM events WHERE event = 'OrderPlaced' AND decider_id LIKE ${prefix}`,
  );
  const placedInModel = await one(
    db,
    sql`SELECT coalesce(sum(orders_placed), 0) AS n FROM demo.restaurants WHERE id LIKE ${prefix}`,
  );
  expect(
    placedInModel === placedInLog,
    `restaurant-menus: ${placedInModel} orders counted, ${placedInLog} in the log`,
  );
  const preparedInLog = await one(
    db,
    sql`SELECT count(*) AS n FROM events WHERE event = 'OrderPrepared' AND decider_id LIKE ${prefix}`,
  );
  const preparedInModel = await one(
    db,
    sql`SELECT count(*) AS n FROM demo.orders WHERE status = 'prepared' AND id LIKE ${prefix}`,
  );
  expect(
    preparedInModel === preparedInLog,
    `order-board: ${preparedInModel} orders prepared, ${preparedInLog} in the log`,
  );
  if (stats) {
    const total = await one(
      db,
      sql`SELECT count(*) AS n FROM events WHERE decider IN ('Restaurant', 'Order') AND decider_id LIKE ${prefix}`,
    );
    expect(
      total === stats.eventsAppended &&
        placedInLog === stats.ordersPlaced &&
        preparedInLog === stats.ordersPrepared,
      `no conflict lost: ${stats.eventsAppended} events appended by ${stats.commands - stats.rejected} successful commands ` +
        `(${stats.retries} retries after conflicts), ${total} in the log`,
    );
  }
  return { ok, lines };
}
