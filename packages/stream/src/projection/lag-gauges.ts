/**
 * The lag of each view a process works on, as OpenTelemetry observable gauges: `fstore.projection.lag` (events not
 * handled yet) and `fstore.projection.lag.age` (seconds since the oldest of them was appended). Read from
 * view_lag() when the SDK collects, once per database for all the views of this process's workers, whose
 * figures the statement gives at once; nothing is read without an SDK that collects.
 */
import type { Database } from '@fstore/store';
import { type GaugeReading, observeGauges } from '@fstore/store/internal';
import { viewLag } from '../functions.js';
import { meterScope } from '../observability.js';

const gauges = {
  'fstore.projection.lag': { description: 'Events the view has not handled yet', unit: '{event}' },
  'fstore.projection.lag.age': {
    description: 'Seconds since the oldest event the view has not handled was appended (0 when none)',
    unit: 's',
  },
};

/** Per database: the views its workers run (with how many workers each), and what stops observing. */
const watched = new Map<Database, { views: Map<string, number>; stop: () => void }>();

/** Observes the lag of `view` while its worker runs; returns what stops it. */
export function watchLag(db: Database, view: string): () => void {
  let entry = watched.get(db);
  if (!entry) {
    const views = new Map<string, number>();
    const stop = observeGauges(meterScope, gauges, () => readLag(db, views));
    entry = { views, stop };
    watched.set(db, entry);
  }
  const { views } = entry;
  views.set(view, (views.get(view) ?? 0) + 1);
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    const left = (views.get(view) ?? 1) - 1;
    if (left > 0) views.set(view, left);
    else views.delete(view);
    if (views.size === 0 && watched.get(db)?.views === views) {
      watched.get(db)?.stop();
      watched.delete(db);
    }
  };
}

async function readLag(db: Database, views: ReadonlyMap<string, number>): Promise<GaugeReading[]> {
  if (views.size === 0) return [];
  // A database that cannot answer now reports nothing this time, rather than a lag of zero.
  const rows = await viewLag(db).catch(() => []);
  const now = Date.now();
  return rows
    .filter((row) => views.has(row.view))
    .flatMap((row) => [
      { gauge: 'fstore.projection.lag', value: row.eventsBehind, attributes: { view: row.view } },
      {
        gauge: 'fstore.projection.lag.age',
        value: row.oldestUnackedAt ? Math.max(0, (now - row.oldestUnackedAt.getTime()) / 1000) : 0,
        attributes: { view: row.view },
      },
    ]);
}
