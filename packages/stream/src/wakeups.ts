/**
 * What wakes an idle worker before its polling delay is out. Without wake-ups, or when they fail, it keeps polling on
 * its own: wake-ups only shorten the wait.
 * - 'probe' (default): the shared probe of the log's head (log-head-probe.ts). Costs appends nothing.
 * - 'notify': LISTEN on a connection of its own, fed by the NOTIFY that set_wakeups(true) adds to every appending
 *   transaction. Sub-millisecond, but PostgreSQL serialises the commits of notifying transactions (0.45x append
 *   throughput on durable settings, issue 11): for databases where appends are rare and latency is everything.
 *   Unavailable on YugabyteDB and through poolers in transaction mode.
 * - 'off': polling only.
 */
import type { Database } from '@fstore/store';
import { watchLogHead } from './log-head-probe.js';
import type { Logger } from './observability.js';

export const wakeupChannel = 'fstore_events';

/** How a worker learns that there is something new; see ProjectionOptions.wakeups. */
export type WakeupMode = 'probe' | 'notify' | 'off';

export interface Wakeups {
  close(): Promise<void>;
}

/** Starts the wake-ups a worker chose; undefined when there are none (off, or LISTEN unavailable). */
export async function startWakeups(
  mode: WakeupMode,
  db: Database,
  onWakeup: () => void,
  logger: Logger,
): Promise<Wakeups | undefined> {
  if (mode === 'probe') return watchLogHead(db, onWakeup, logger);
  if (mode === 'notify') return listenForWakeups(db, onWakeup, logger);
  return undefined;
}

interface PostgresJsListener {
  listen(channel: string, onNotify: () => void): Promise<{ unlisten(): Promise<void> }>;
  unsafe: unknown;
}
interface PGliteListener {
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  exec: unknown;
}

/** Listens on the driver under a Drizzle database (postgres.js or PGlite); undefined when it cannot. */
export async function listenForWakeups(
  db: Database,
  onWakeup: () => void,
  logger: Logger,
): Promise<Wakeups | undefined> {
  const client = (db as unknown as { $client?: unknown }).$client;
  try {
    if (
      client &&
      typeof (client as PostgresJsListener).unsafe === 'function' &&
      'listen' in (client as object)
    ) {
      const { unlisten } = await (client as PostgresJsListener).listen(wakeupChannel, onWakeup);
      return { close: () => unlisten().catch(() => {}) };
    }
    if (client && typeof (client as PGliteListener).exec === 'function' && 'listen' in (client as object)) {
      const unlisten = await (client as PGliteListener).listen(wakeupChannel, onWakeup);
      return { close: () => unlisten().catch(() => {}) };
    }
  } catch (error) {
    logger.warn('wake-ups unavailable; polling only', { error: String(error) });
  }
  return undefined;
}
