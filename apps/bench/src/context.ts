import { withDatabase } from '@fstore/embedded-postgres';
import { migrate } from '@fstore/schema';
import postgres from 'postgres';

export interface BenchContext {
  quick: boolean;
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
        // The baseline: the same columns, defaults and indexes as events, and no trigger, rule or function.
        await sql`CREATE TABLE events_baseline (LIKE events INCLUDING ALL)`;
      } finally {
        await sql.end();
      }
      return url;
    },
  };
}
