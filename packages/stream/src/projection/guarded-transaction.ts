/** The transaction a batch runs in, ended if it outlives maxBatchSeconds and marked for its acknowledgement. */
import { randomUUID } from 'node:crypto';
import { inSpan, queryRows, type SpanOptions } from '@fstore/store/internal';
import { sql } from 'drizzle-orm';
import { batchMarker } from '../functions.js';
import type { ProjectionContext } from './context.js';
import type { Transaction } from './types.js';

/**
 * Runs `work` in a transaction whose first statement notes its backend, for the watchdog that terminates it after
 * maxBatchSeconds (calling `onExpired` first), and sets `batchMarker`, without which the acknowledgement refuses
 * to run: a driver that sends it on another session acknowledges nothing (see docs/drivers.md). The transaction is
 * a batch's: with OpenTelemetry, a span `process {view}` of a trace of its own (a worker's poll is no one's child),
 * the parent of its handlers' spans; `work` returns how many events it handled, for the span.
 */
export async function guardedTransaction(
  context: ProjectionContext,
  work: (tx: Transaction, transactionMarker: string) => Promise<number>,
  onExpired: () => void,
  /** A shorter limit than maxBatchSeconds, and a signal that ends the session at once (a log batch's). */
  guard: { seconds?: number; end?: AbortSignal } = {},
): Promise<void> {
  const { db, view, logger } = context;
  const seconds = Math.min(guard.seconds ?? context.maxBatchSeconds, context.maxBatchSeconds);
  let pid: number | undefined;
  let ended = false;
  const end = (why: string) => {
    if (ended) return;
    ended = true;
    onExpired();
    logger.error(`${why}; ending its session`, { view, seconds, pid });
    if (pid !== undefined) db.execute(sql`SELECT pg_terminate_backend(${pid})`).catch(() => {});
  };
  const watchdog = setTimeout(() => end('batch outlived its time limit'), seconds * 1000);
  const onEnd = () => end('batch abandoned while stopping');
  guard.end?.addEventListener('abort', onEnd);
  try {
    const transactionMarker = randomUUID();
    await inSpan(`process ${view}`, batchSpan(view), async (span) => {
      await db.transaction(async (tx) => {
        const [row] = await queryRows(
          tx,
          sql`SELECT pg_backend_pid() AS pid, set_config(${batchMarker}, ${transactionMarker}, true)`,
        );
        pid = Number(row?.pid);
        const handled = await work(tx as Transaction, transactionMarker);
        span.setAttributes({ 'messaging.batch.message_count': handled });
      });
    });
  } finally {
    clearTimeout(watchdog);
    guard.end?.removeEventListener('abort', onEnd);
  }
}

/** A batch's span: OpenTelemetry's messaging conventions, the view as the consumer group and the destination. */
function batchSpan(view: string): SpanOptions {
  return {
    kind: 'consumer',
    root: true,
    attributes: {
      'messaging.system': 'fstore',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.name': view,
      'messaging.consumer.group.name': view,
      'fstore.view': view,
    },
  };
}
