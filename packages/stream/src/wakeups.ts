/**
 * NOTIFY wake-ups: a dedicated listening connection that makes the worker poll as soon as events are appended
 * (when the database sends them: set_wakeups(true)). Without them, or where LISTEN is unavailable (YugabyteDB,
 * poolers in transaction mode), the worker keeps polling on its own; wake-ups only shorten the wait.
 */
import type { Database } from '@fstore/store';
import type { Logger } from './observability.js';

export const wakeupChannel = 'fstore_events';

export interface Wakeups {
  close(): Promise<void>;
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
