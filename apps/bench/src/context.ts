import { withDatabase } from '@fstore/embedded-postgres';
import { migrate } from '@fstore/schema';
import postgres from 'postgres';

export interface BenchContext {
  quick: boolean;
  /** Whether this server keeps PostgreSQL's durability defaults (the headline figures) or runs with fsync off. */
  durable: boolean;
  /** How long one measurement runs. */
  durationMs: number;
  /** Measurements per figure; the median is reported. */
  rounds: number;
  adminUrl: string;
  /** A fresh, migrated database with the Bench decider registered and a baseline table beside events. */
  freshDatabase(label: string): Promise<string>;
  log(message: string): void;
}

export interface Figure {
  scenario: string;
  case: string;
  unit: string;
  value: number;
  /** What `value` is compared with, measured in the same run. */
  baseline?: { label: string; value: number };
  ratio?: number;
  target?: { description: string; met: boolean };
  note?: string;
  /** Why this case could not be measured here (it is not a failure: e.g. the schema lacks what it measures). */
  skipped?: string;
  /** The same case measured on a second server with fsync and full_page_writes off (a labelled second column). */
  fsyncOff?: Pick<Figure, 'value' | 'baseline' | 'ratio' | 'target'>;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function createContext(options: {
  quick: boolean;
  durable: boolean;
  durationMs: number;
  rounds: number;
  adminUrl: string;
  log(message: string): void;
}): BenchContext {
  let counter = 0;
  return {
    ...options,
    async freshDatabase(label) {
      const name = `fstore_bench_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_')}_${process.pid}_${counter++}`;
      const admin = postgres(options.adminUrl, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        await admin.unsafe(`CREATE DATABASE "${name}"`);
      } finally {
        await admin.end();
      }
      const url = withDatabase(options.adminUrl, name);
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await migrate(sql);
        await sql`SELECT * FROM register_decider_event('Bench', 'Happened')`;
        // The baseline: the same columns, defaults and indexes as events (copied from the catalog, so an index added
        // to events is added here too), and no trigger, rule, foreign key or function.
        await sql`CREATE TABLE events_baseline (LIKE events INCLUDING ALL)`;
        await sameIndexes(sql);
      } finally {
        await sql.end();
      }
      return url;
    },
  };
}

/** Fails unless events_baseline has exactly the indexes of events (names and table aside): A1 would mean nothing. */
async function sameIndexes(sql: postgres.Sql) {
  const rows = await sql<{ table: string; definition: string }[]>`
    SELECT tablename AS table,
           regexp_replace(indexdef, '^CREATE (UNIQUE )?INDEX \\S+ ON \\S+ ', 'CREATE \\1INDEX ON t ') AS definition
    FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename IN ('events', 'events_baseline')
    ORDER BY definition`;
  const of = (table: string) =>
    rows
      .filter((row) => row.table === table)
      .map((row) => row.definition)
      .join('\n');
  if (of('events') !== of('events_baseline'))
    throw new Error(
      `events_baseline does not have the indexes of events:\n${of('events')}\n---\n${of('events_baseline')}`,
    );
}
