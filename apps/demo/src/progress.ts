/** Live progress on one updating line (or a line every two seconds when the output is not a terminal). */
import type { Database } from '@fstore/store';
import { viewStatus } from '@fstore/stream';
import { sql } from 'drizzle-orm';
import type { ProducerStats } from './producers.js';
import { views } from './setup.js';

export interface Progress {
  stop(): Promise<void>;
}

export function startProgress(
  db: Database,
  stats: ProducerStats,
  out: NodeJS.WriteStream = process.stdout,
): Progress {
  const interactive = out.isTTY === true;
  let last = '';
  let stopped = false;
  const render = async () => {
    const projected = (await db.execute(
      sql`SELECT count(*)::int AS n FROM demo.projected_events`,
    )) as unknown as { n: number }[];
    const status = (await viewStatus(db)).filter(
      (s) => s.view === views.restaurants || s.view === views.orders,
    );
    const lag = status.reduce((sum, s) => sum + s.eventsBehind, 0);
    const parked = status.reduce((sum, s) => sum + s.parkedEvents, 0);
    const oldest = status
      .map((s) => s.oldestUnackedAt?.getTime())
      .filter((t): t is number => t !== undefined);
    const age =
      oldest.length > 0 ? `, oldest ${((Date.now() - Math.min(...oldest)) / 1000).toFixed(1)}s` : '';
    last =
      `appended ${stats.eventsAppended} | projected ${projected[0]?.n ?? 0} | lag ${lag}${age} | ` +
      `retries ${stats.retries} | rejected ${stats.rejected} | parked ${parked}`;
    out.write(interactive ? `\r\x1b[2K${last}` : `${last}\n`);
  };
  const loop = (async () => {
    while (!stopped) {
      await render().catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, interactive ? 250 : 2000));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await render().catch(() => {});
      if (interactive) out.write('\n');
    },
  };
}
