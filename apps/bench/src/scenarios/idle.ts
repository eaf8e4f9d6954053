/**
 * I1: what idle projection workers cost the database. Ten workers with nothing to do, as deployed (plain Node.js,
 * built packages, the library's default polling and wake-ups), either ten processes or ten projections in one
 * process; the figure is the transactions per second the database counts for them (pg_stat_database's
 * xact_commit + xact_rollback; every statement outside a transaction is one), over a window after they settle.
 */
import postgres from 'postgres';
import type { BenchContext, Figure } from '../context.js';
import { runConsumers } from '../load.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function transactions(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ n: string }[]>`
    SELECT (xact_commit + xact_rollback)::text AS n FROM pg_stat_database WHERE datname = current_database()`;
  return Number(row?.n ?? 0);
}

async function idleLoad(ctx: BenchContext, processes: number, projections: number, windowMs: number) {
  const url = await ctx.freshDatabase(`i1-${processes}`);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  // A backend reports its counts at most once a second (up to 10 s later when it goes idle): a long window, after
  // the workers have started, makes that lag small against what is measured.
  const settleMs = ctx.quick ? 2_000 : 3_000;
  let perSecond = Number.NaN;
  try {
    await runConsumers(
      {
        url,
        mode: 'project',
        view: 'idle',
        durationMs: settleMs + windowMs + 2_000,
        concurrency: 1,
        batchSize: 100,
        projections,
      },
      processes,
      async () => {
        await sleep(settleMs);
        const before = await transactions(sql);
        const started = performance.now();
        await sleep(windowMs);
        const after = await transactions(sql);
        // Our own two reads are the only other transactions in this database.
        perSecond = (after - before - 1) / ((performance.now() - started) / 1000);
      },
      { deployed: true },
    );
  } finally {
    await sql.end();
  }
  return perSecond;
}

export async function idleScenarios(ctx: BenchContext): Promise<Figure[]> {
  const windowMs = ctx.quick ? 3_000 : 20_000;
  const figures: Figure[] = [];
  for (const [processes, projections, label] of [
    [10, 1, 'ten processes, one projection each'],
    [1, 10, 'one process, ten projections'],
  ] as const) {
    ctx.log(`I1: idle workers, ${label}`);
    const rate = await idleLoad(ctx, processes, projections, windowMs);
    figures.push({
      scenario: 'I1',
      case: `10 idle projection workers (${label}), default polling and wake-ups: statements sent`,
      unit: 'statements/s',
      value: rate,
      note: `report only: pg_stat_database transactions over ${windowMs / 1000} s`,
    });
  }
  return figures;
}
