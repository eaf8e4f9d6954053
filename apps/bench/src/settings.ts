/**
 * The two servers of a run: the headline figures on PostgreSQL's durability defaults, and a labelled second column
 * with fsync off. What each server runs with is read from it, not assumed.
 */
import postgres from 'postgres';
import type { Figure } from './context.js';

export interface ServerSettings {
  version: string;
  /** "fsync=on, full_page_writes=on, synchronous_commit=on" */
  settings: string;
  /** Whether a commit is flushed to disk before it returns, as production runs. */
  durable: boolean;
}

export async function describeServer(server: { adminUrl: string }): Promise<ServerSettings> {
  const sql = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ name: string; setting: string }[]>`
      SELECT name, setting FROM pg_settings
      WHERE name IN ('server_version', 'fsync', 'full_page_writes', 'synchronous_commit')`;
    const value = (name: string) => rows.find((row) => row.name === name)?.setting ?? 'unknown';
    const durability = ['fsync', 'full_page_writes', 'synchronous_commit'];
    return {
      version: `PostgreSQL ${value('server_version')}`,
      settings: durability.map((name) => `${name}=${value(name)}`).join(', '),
      durable:
        value('fsync') === 'on' &&
        value('full_page_writes') === 'on' &&
        value('synchronous_commit') !== 'off',
    };
  } finally {
    await sql.end();
  }
}

/** Puts each fsync-off figure beside the headline figure of the same case (its own row if there is none). */
export function mergeFsyncOff(headline: readonly Figure[], fsyncOff: readonly Figure[]): Figure[] {
  const merged = headline.map((figure) => ({ ...figure }));
  for (const figure of fsyncOff) {
    const same = merged.find((f) => f.scenario === figure.scenario && f.case === figure.case);
    const column = {
      value: figure.value,
      ...(figure.baseline ? { baseline: figure.baseline } : {}),
      ...(figure.ratio === undefined ? {} : { ratio: figure.ratio }),
      ...(figure.target ? { target: figure.target } : {}),
    };
    if (figure.skipped) continue;
    if (same) same.fsyncOff = column;
    else
      merged.push({ ...figure, value: Number.NaN, note: 'measured with fsync off only', fsyncOff: column });
  }
  return merged;
}
