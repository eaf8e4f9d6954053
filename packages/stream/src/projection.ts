/**
 * A projection worker: leases streams of a view, hands their events in order to a handler together with a
 * Drizzle transaction, and acknowledges in that same transaction. A read model in the same database therefore
 * sees each event exactly once, across crashes, retries and expired leases (the acknowledgement checks the
 * lease's token, and its failure rolls the handler's writes back). Handlers with outside effects get at-least-once
 * delivery and the event id to deduplicate on.
 *
 * Streams run concurrently (up to `concurrency` per worker), events of one stream always in order, and any number
 * of workers, in any number of processes, share a view.
 */

import { randomUUID } from 'node:crypto';
import { views } from '@fstore/schema';
import {
  type Database,
  type DeciderEvents,
  type EventDefinitions,
  type EventOf,
  Issues,
  isTransientDatabaseError,
  limits,
  queryRows,
  type StoredEvent,
  toStoredEvent,
} from '@fstore/store';
import { eq, sql } from 'drizzle-orm';
import { LeaseLostError } from './errors.js';
import {
  ackEvents,
  ackLeases,
  ackParkedEvent,
  batchMarker,
  claimParkedEvent,
  failEvent,
  failParkedEvent,
  type LeasedEvent,
  leaseEvents,
  registerView,
  releaseLease,
  renewLease,
} from './functions.js';
import { type Logger, type ProjectionMetrics, silentLogger } from './observability.js';
import { listenForWakeups, type Wakeups } from './wakeups.js';

/** The events a projection reads: the union of the events of the deciders it declares. */
export type ProjectedEvent<TDeciders extends readonly DeciderEvents<EventDefinitions>[]> = StoredEvent<
  EventOf<TDeciders[number]>
>;

/** A Drizzle transaction, as handed to a handler. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export interface HandlerContext {
  view: string;
  /** 1 for a first delivery; more when earlier deliveries of this event failed. */
  attempt: number;
  /** Aborted when the worker stops or the lease is lost: a long handler should give up. */
  signal: AbortSignal;
}

export interface ProjectionOptions<TDeciders extends readonly DeciderEvents<EventDefinitions>[]> {
  /** A Drizzle database (postgres.js or PGlite) with a pool large enough for `concurrency` transactions. */
  db: Database;
  /** The view's name. It is registered at start if it does not exist yet (see `startAt`). */
  view: string;
  /**
   * The deciders whose events the handler reads. Events of other deciders are acknowledged without a call; an
   * event of a declared decider that the declaration cannot read fails like a throwing handler (and is parked).
   */
  events: TDeciders;
  /** Handles one event; its writes through `tx` commit together with the acknowledgement. */
  handle(event: ProjectedEvent<TDeciders>, tx: Transaction, context: HandlerContext): Promise<void> | void;
  /** Streams handled at once by this worker. Default 4. */
  concurrency?: number;
  /** Events leased per stream at once (one transaction, one acknowledgement). Default 100. */
  batchSize?: number;
  /**
   * Streams handled in one transaction, when their batches are small (one event each, say): one transaction and
   * one acknowledgement for them all. If any of them fails, each is handled again on its own. Default 20.
   */
  streamsPerTransaction?: number;
  /** Lease length in seconds; renewed every third of it while a batch runs. Default 30. */
  leaseSeconds?: number;
  /**
   * The longest a batch's transaction may run, in seconds. Past it the worker stops renewing the lease and ends the
   * transaction's session (pg_terminate_backend), so a handler, or a driver, that hangs cannot hold a stream (and
   * the read model's row locks) for ever: the transaction rolls back and the stream is delivered again. Default
   * 600 (ten minutes): long handlers keep their lease by renewal well before that.
   */
  maxBatchSeconds?: number;
  /** Longest wait between polls when idle. Default: the view's registered polling delay, else 1000 ms. */
  pollIntervalMs?: number;
  /** Where a view created by this worker starts reading. Default: the beginning of the log. */
  startAt?: Date;
  /** Deliveries of one event before it is parked. Default 5. */
  maxAttempts?: number;
  /** Retry delays: `initialMs` doubled per attempt up to `maxMs`, with jitter. Default 200 ms to 60 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** What parking does to the stream: move on past the event (default), or stop at it until an operator acts. */
  onParked?: 'continue' | 'stop';
  /** Listen for NOTIFY wake-ups (when the database sends them; see set_wakeups). Default true. */
  wakeups?: boolean;
  logger?: Logger;
  metrics?: ProjectionMetrics;
}

export interface ProjectionStats {
  handled: number;
  failed: number;
  parked: number;
  leaseLost: number;
  polls: number;
}

export interface Projection {
  readonly view: string;
  readonly stats: Readonly<ProjectionStats>;
  /** Starts polling (registering the view first if needed). Resolves once running. */
  start(): Promise<void>;
  /**
   * Stops leasing, lets in-flight batches finish (up to `timeoutMs`, default 10 s; then signals them to abort),
   * and stops listening. Resolves within about `timeoutMs`.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
  /** Resolves at the next moment the worker has nothing leased and the last poll found nothing (for tests, tools). */
  idle(): Promise<void>;
}

interface Batch {
  view: string;
  deciderId: string;
  leaseId: string;
  attempts: number;
  rows: LeasedEvent[];
}

/** How many times a batch rolled back by a serialization failure or a deadlock runs again before it counts as failed. */
const maxTransientReruns = 5;

class HandlerFailure extends Error {
  constructor(
    readonly index: number,
    override readonly cause: unknown,
  ) {
    super('handler failed');
  }
}

/** Creates a projection worker. Call `start()`; call `stop()` on shutdown. */
export function createProjection<const TDeciders extends readonly DeciderEvents<EventDefinitions>[]>(
  options: ProjectionOptions<TDeciders>,
): Projection {
  const { db, view, handle } = options;
  const concurrency = options.concurrency ?? 4;
  const batchSize = options.batchSize ?? 100;
  const streamsPerTransaction = Math.max(1, options.streamsPerTransaction ?? 20);
  const leaseSeconds = options.leaseSeconds ?? 30;
  const maxBatchSeconds = options.maxBatchSeconds ?? 600;
  const maxAttempts = options.maxAttempts ?? 5;
  const initialBackoff = options.backoff?.initialMs ?? 200;
  const maxBackoff = options.backoff?.maxMs ?? 60_000;
  const issues = new Issues();
  issues.text('view', view, limits.maxNameLength);
  issues.whole('concurrency', concurrency, 1, 1000);
  issues.whole('batchSize', batchSize, 1, 100_000);
  issues.whole('streamsPerTransaction', streamsPerTransaction, 1, 10_000);
  issues.whole('leaseSeconds', leaseSeconds, 1, 86_400);
  issues.whole('maxBatchSeconds', maxBatchSeconds, 1, 864_000);
  issues.whole('maxAttempts', maxAttempts, 1, 1_000_000);
  issues.whole('backoff.initialMs', initialBackoff, 0);
  issues.whole('backoff.maxMs', maxBackoff, 0);
  if (options.pollIntervalMs !== undefined) issues.whole('pollIntervalMs', options.pollIntervalMs, 0);
  if (!Array.isArray(options.events) || options.events.length === 0)
    issues.add('events', 'must declare at least one decider');
  issues.throwIfAny();
  const logger = { ...silentLogger, ...options.logger };
  const metrics = options.metrics;
  const byDecider = new Map(options.events.map((declared) => [declared.decider, declared]));
  const stats: ProjectionStats = { handled: 0, failed: 0, parked: 0, leaseLost: 0, polls: 0 };
  const attributes = { view };

  let running = false;
  let loop: Promise<void> | undefined;
  let wakeups: Wakeups | undefined;
  let wake: (() => void) | undefined;
  let woken = false;
  const inFlight = new Set<Promise<void>>();
  const stopping = new AbortController();
  let idleWaiters: (() => void)[] = [];

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (woken || !running) {
        woken = false;
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        woken = false;
        resolve();
      }
      wake = done;
    });
  const wakeUp = () => {
    if (wake) wake();
    else woken = true;
  };

  async function pollIntervalCeiling(): Promise<number> {
    if (options.pollIntervalMs !== undefined) return options.pollIntervalMs;
    const [row] = await db
      .select({ ms: views.poolingDelayMs, s: views.poolingDelayS })
      .from(views)
      .where(eq(views.view, view));
    return row?.ms ?? (row?.s != null ? row.s * 1000 : 1000);
  }

  async function ensureRegistered() {
    const [existing] = await db.select({ view: views.view }).from(views).where(eq(views.view, view));
    if (!existing) {
      await registerView(db, view, { startAt: options.startAt ?? new Date(0), lockTimeoutS: leaseSeconds });
      logger.info('registered view', { view });
    }
  }

  async function run() {
    const ceiling = await pollIntervalCeiling();
    let idleDelay = Math.min(25, ceiling);
    let errorDelay = 100;
    while (running) {
      const free = concurrency - inFlight.size;
      if (free <= 0) {
        await Promise.race(inFlight);
        continue;
      }
      let leased: LeasedEvent[];
      try {
        stats.polls++;
        leased = await leaseEvents(db, view, {
          streams: free * streamsPerTransaction,
          eventsPerStream: batchSize,
          lockSeconds: leaseSeconds,
        });
        errorDelay = 100;
      } catch (error) {
        // The database went away, or refused: back off, keep our place (the leases and positions are in SQL).
        logger.warn('leasing failed; retrying', { view, error: describe(error), retryInMs: errorDelay });
        await sleep(errorDelay);
        errorDelay = Math.min(errorDelay * 2, 30_000);
        continue;
      }
      for (const group of transactionGroups(groupByStream(leased), free)) {
        // A finished batch frees a slot, and its stream may have more events: poll again at once. (It may finish
        // while the loop is polling, before it waits: wakeUp then makes that wait return at once.)
        const work = (group.length === 1 ? processBatch(group[0] as Batch) : processGroup(group)).finally(
          () => {
            inFlight.delete(work);
            wakeUp();
          },
        );
        inFlight.add(work);
      }
      if (leased.length > 0) {
        idleDelay = Math.min(25, ceiling);
        continue; // a backlog: poll again at once (for the slots still free)
      }
      try {
        if (await retryParked()) continue;
      } catch (error) {
        logger.warn('retrying a parked event failed', { view, error: describe(error) });
      }
      if (inFlight.size === 0) {
        for (const resolve of idleWaiters) resolve();
        idleWaiters = [];
      }
      await Promise.race([sleep(idleDelay), ...(inFlight.size > 0 ? [Promise.race(inFlight)] : [])]);
      idleDelay = Math.min(idleDelay * 2, ceiling);
    }
  }

  function groupByStream(rows: LeasedEvent[]): Batch[] {
    const batches = new Map<string, Batch>();
    for (const row of rows) {
      let batch = batches.get(row.leaseId);
      if (!batch) {
        batch = { view, deciderId: row.deciderId, leaseId: row.leaseId, attempts: row.attempts, rows: [] };
        batches.set(row.leaseId, batch);
      }
      batch.rows.push(row);
    }
    for (const batch of batches.values()) batch.rows.sort((a, b) => a.offset - b.offset);
    return [...batches.values()];
  }

  /**
   * Packs the leased batches into at most `slots` transactions, so that many small streams (one event each, say)
   * do not cost a transaction each, and the worker never runs more than `concurrency` transactions. A poll leases
   * at most `streamsPerTransaction` streams per free slot.
   */
  function transactionGroups(batches: Batch[], slots: number): Batch[][] {
    const groups: Batch[][] = Array.from({ length: Math.min(slots, batches.length) }, () => []);
    for (const [index, batch] of batches.entries()) groups[index % groups.length]?.push(batch);
    return groups;
  }

  /**
   * Runs `work` in a transaction whose session is ended if it outlives maxBatchSeconds (see that option): the
   * transaction's first statement notes its backend, a timer terminates it, and `onExpired` stops the renewals.
   * That statement also marks the transaction (a transaction-local setting, `batchMarker`), which the
   * acknowledgement requires: should a driver run it anywhere else (postgres.js 3.4.9 without this workspace's
   * patch runs a dead transaction's later statements on the reconnected session, porsager/postgres#1215), it
   * acknowledges nothing and fails, so no event is acknowledged without its handler's writes.
   */
  async function guardedTransaction(
    work: (tx: Transaction, transactionMarker: string) => Promise<void>,
    onExpired: () => void,
  ) {
    let pid: number | undefined;
    const watchdog = setTimeout(() => {
      onExpired();
      logger.error('batch outlived maxBatchSeconds; ending its session', { view, maxBatchSeconds, pid });
      if (pid !== undefined) db.execute(sql`SELECT pg_terminate_backend(${pid})`).catch(() => {});
    }, maxBatchSeconds * 1000);
    try {
      const transactionMarker = randomUUID();
      await db.transaction(async (tx) => {
        const [row] = await queryRows(
          tx,
          sql`SELECT pg_backend_pid() AS pid, set_config(${batchMarker}, ${transactionMarker}, true)`,
        );
        pid = Number(row?.pid);
        await work(tx as Transaction, transactionMarker);
      });
    } finally {
      clearTimeout(watchdog);
    }
  }

  /**
   * Handles several streams' batches in one transaction and acknowledges them in one statement. If anything fails
   * (a handler, a lost lease), everything rolls back and each batch is handled on its own, which reports failures
   * and lost leases stream by stream. (Handlers with outside effects may then see an event twice, as after any
   * retry; the read model sees it once.)
   */
  async function processGroup(group: Batch[]) {
    const started = Date.now();
    const renewal = setInterval(
      () => {
        for (const batch of group) renewLease(db, batch, leaseSeconds).catch(() => {});
      },
      Math.max(250, (leaseSeconds * 1000) / 3),
    );
    let failed = false;
    try {
      await guardedTransaction(
        async (tx, transactionMarker) => {
          for (const batch of group) {
            for (const row of batch.rows) {
              if (stopping.signal.aborted) throw new LeaseLostError(view, batch.deciderId, batch.leaseId);
              const declared = byDecider.get(row.decider);
              if (!declared) continue;
              const event = (await toStoredEvent(declared, row)) as ProjectedEvent<TDeciders>;
              await handle(event, tx as Transaction, {
                view,
                attempt: batch.attempts + 1,
                signal: stopping.signal,
              });
            }
          }
          await ackLeases(
            tx,
            view,
            group.map((batch) => ({ ...batch, offset: (batch.rows.at(-1) as LeasedEvent).offset })),
            { transactionMarker },
          );
        },
        () => clearInterval(renewal),
      );
      const handled = group.reduce((sum, batch) => sum + batch.rows.length, 0);
      stats.handled += handled;
      metrics?.count('fstore.projection.handled', handled, attributes);
      metrics?.record('fstore.projection.batch_ms', Date.now() - started, attributes);
    } catch {
      failed = true;
    } finally {
      clearInterval(renewal);
    }
    if (failed) for (const batch of group) await processBatch(batch);
  }

  /** Handles rows [0, upTo) of a batch in one transaction and acknowledges the last of them. */
  async function commit(
    batch: Batch,
    upTo: number,
    release: boolean,
    signal: AbortSignal,
    onExpired: () => void,
  ) {
    await guardedTransaction(async (tx, transactionMarker) => {
      for (let index = 0; index < upTo; index++) {
        const row = batch.rows[index] as LeasedEvent;
        if (signal.aborted) throw new LeaseLostError(view, batch.deciderId, batch.leaseId);
        const declared = byDecider.get(row.decider);
        if (!declared) continue; // not this projection's decider: acknowledged without a call
        try {
          const event = (await toStoredEvent(declared, row)) as ProjectedEvent<TDeciders>;
          await handle(event, tx as Transaction, {
            view,
            attempt: index === 0 ? batch.attempts + 1 : 1,
            signal,
          });
        } catch (error) {
          throw new HandlerFailure(index, error);
        }
      }
      const last = batch.rows[upTo - 1] as LeasedEvent;
      await ackEvents(tx, batch, last.offset, { release, transactionMarker });
    }, onExpired);
  }

  async function processBatch(batch: Batch) {
    const started = Date.now();
    const lease = new AbortController();
    const onStop = () => lease.abort();
    stopping.signal.addEventListener('abort', onStop);
    const renewal = setInterval(
      () => {
        renewLease(db, batch, leaseSeconds)
          .then((held) => {
            if (!held) lease.abort();
          })
          .catch((error) =>
            logger.warn('lease renewal failed', { view, deciderId: batch.deciderId, error: describe(error) }),
          );
      },
      Math.max(250, (leaseSeconds * 1000) / 3),
    );
    try {
      let upTo = batch.rows.length;
      let failure: HandlerFailure | undefined;
      let reruns = 0;
      // Commit what succeeds; when a handler throws at event i, redo [0, i) (rolled back with it) and report i.
      for (;;) {
        try {
          if (upTo > 0) {
            await commit(batch, upTo, failure === undefined, lease.signal, () => {
              clearInterval(renewal);
              lease.abort();
            });
          }
          break;
        } catch (error) {
          // A serialization failure or a deadlock (in the handler's writes or the acknowledgement) is the
          // database asking to run the transaction again: do, at once, under the same lease, without counting a
          // failed delivery (which would park events under mere contention).
          const cause = error instanceof HandlerFailure ? error.cause : error;
          if (isTransientDatabaseError(cause) && reruns < maxTransientReruns && !lease.signal.aborted) {
            reruns++;
            metrics?.count('fstore.projection.reruns', 1, attributes);
            logger.warn(
              'batch rolled back by the database (serialization failure or deadlock); running it again',
              {
                view,
                deciderId: batch.deciderId,
                rerun: reruns,
                error: describe(cause),
              },
            );
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * reruns));
            continue;
          }
          if (!(error instanceof HandlerFailure)) throw error;
          failure = error;
          upTo = error.index;
        }
      }
      if (upTo > 0) {
        stats.handled += upTo;
        metrics?.count('fstore.projection.handled', upTo, attributes);
      }
      if (failure) await reportFailure(batch, failure);
      metrics?.record('fstore.projection.batch_ms', Date.now() - started, attributes);
    } catch (error) {
      if (error instanceof LeaseLostError && stopping.signal.aborted) {
        // Stopping: the batch was abandoned and rolled back; hand the stream to another worker now.
        await releaseLease(db, batch).catch(() => {});
        logger.info('stopping: batch abandoned, lease released', { view, deciderId: batch.deciderId });
      } else if (error instanceof LeaseLostError) {
        stats.leaseLost++;
        metrics?.count('fstore.projection.lease_lost', 1, attributes);
        logger.warn('lease lost; the batch was rolled back', { view, deciderId: batch.deciderId });
      } else {
        // Not the handler: the database or the connection. The lease expires and the batch comes again.
        logger.error('batch failed outside the handler', {
          view,
          deciderId: batch.deciderId,
          error: describe(error),
        });
      }
    } finally {
      clearInterval(renewal);
      stopping.signal.removeEventListener('abort', onStop);
    }
  }

  /**
   * Handles one parked event that an operator asked to retry (retry_parked_event) and whose stream has moved past
   * it: alone, out of its stream's order, claimed and removed from parked_events in the handler's transaction when
   * it succeeds (claim_parked_event, ack_parked_event), recorded as failed again otherwise (fail_parked_event).
   * Returns whether there was one.
   */
  async function retryParked(): Promise<boolean> {
    let offset: number | undefined;
    try {
      await db.transaction(async (tx) => {
        const parked = await claimParkedEvent(tx, view);
        if (!parked) return;
        offset = parked.offset;
        const declared = byDecider.get(parked.decider);
        try {
          if (declared) {
            const event = (await toStoredEvent(declared, parked)) as ProjectedEvent<TDeciders>;
            await handle(event, tx as Transaction, {
              view,
              attempt: parked.attempts + 1,
              signal: stopping.signal,
            });
          }
        } catch (error) {
          throw new HandlerFailure(0, error);
        }
        await ackParkedEvent(tx, view, parked.offset);
        stats.handled++;
        logger.info('parked event retried and handled', { view, offset: parked.offset });
      });
    } catch (error) {
      if (!(error instanceof HandlerFailure) || offset === undefined) throw error;
      stats.failed++;
      await failParkedEvent(db, view, offset, describe(error.cause));
      logger.error('parked event failed again; it stays parked', {
        view,
        offset,
        error: describe(error.cause),
      });
    }
    return offset !== undefined;
  }

  async function reportFailure(batch: Batch, failure: HandlerFailure) {
    const row = batch.rows[failure.index] as LeasedEvent;
    const attempt = (failure.index === 0 ? batch.attempts : 0) + 1;
    const ceiling = Math.min(maxBackoff, initialBackoff * 2 ** (attempt - 1));
    const retryMs = ceiling / 2 + (Math.random() * ceiling) / 2;
    stats.failed++;
    metrics?.count('fstore.projection.failed', 1, attributes);
    const outcome = await failEvent(db, batch, {
      offset: row.offset,
      error: describe(failure.cause),
      retryMs,
      maxAttempts,
      stopStream: options.onParked === 'stop',
    });
    if (outcome === 'retry') {
      logger.warn('handler failed; will retry', {
        view,
        deciderId: batch.deciderId,
        offset: row.offset,
        attempt,
        retryInMs: Math.round(retryMs),
        error: describe(failure.cause),
      });
    } else {
      stats.parked++;
      metrics?.count('fstore.projection.parked', 1, attributes);
      logger.error(
        `handler failed ${attempt} times; event parked${outcome === 'stopped' ? ', stream stopped' : ''}`,
        {
          view,
          deciderId: batch.deciderId,
          offset: row.offset,
          error: describe(failure.cause),
        },
      );
    }
  }

  return {
    view,
    stats,
    async start() {
      if (running) return;
      await ensureRegistered();
      running = true;
      if (options.wakeups !== false) {
        wakeups = await listenForWakeups(db, wakeUp, logger);
      }
      loop = run().catch((error) => {
        logger.error('projection loop stopped', { view, error: describe(error) });
      });
    },
    async stop({ timeoutMs = 10_000 } = {}) {
      if (!running && !loop) return;
      running = false;
      wakeUp();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const finished = await Promise.race([
        Promise.allSettled([loop, ...inFlight]).then(() => 'done' as const),
        timeout,
      ]);
      if (finished === 'timeout') {
        stopping.abort();
        logger.warn('stopping: in-flight batches did not finish in time; their leases will expire', { view });
      }
      clearTimeout(timer);
      await wakeups?.close();
      wakeups = undefined;
      loop = undefined;
    },
    idle() {
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return (error.stack ?? `${error.name}: ${error.message}`).slice(0, 4000);
  return String(error).slice(0, 4000);
}
