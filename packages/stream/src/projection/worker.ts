/**
 * A projection worker: leases streams of a view and hands their events, in order, to a handler with a Drizzle
 * transaction that also acknowledges them, so a read model in the same database sees each event exactly once;
 * handlers with outside effects get at-least-once delivery and the event id to deduplicate on. Any number of
 * workers, in any number of processes, share a view. See docs/operations.md.
 */
import { views } from '@fstore/schema';
import {
  type Database,
  type DeciderEvents,
  type EventDefinitions,
  isTransientDatabaseError,
} from '@fstore/store';
import { eq } from 'drizzle-orm';
import { SubscriptionMismatchError } from '../errors.js';
import { type LeasedEvent, leaseEvents, registerView } from '../functions.js';
import { startWakeups, type Wakeups } from '../wakeups.js';
import { groupByStream, processTransaction, transactionGroups } from './batching.js';
import { type AnyDeciders, describeError, type ProjectionContext, projectionContext } from './context.js';
import { frontierAdvancer } from './frontier-advancer.js';
import { watchLag } from './lag-gauges.js';
import { leaseSizing } from './lease-sizing.js';
import { type LogBatches, logBatches } from './log-batches.js';
import { handleParkedRetry } from './parked-events.js';
import type { Projection, ProjectionOptions } from './types.js';

/** While log batches come full, a worker still leases this often: retries and busy streams must not wait for them. */
const leaseTurnMs = 1000;

/** Creates a projection worker. Call `start()`; call `stop()` on shutdown. */
export function createProjection<const TDeciders extends readonly DeciderEvents<EventDefinitions>[]>(
  options: ProjectionOptions<TDeciders>,
): Projection {
  const stopping = new AbortController();
  const context = projectionContext(options as unknown as ProjectionOptions<AnyDeciders>, stopping.signal);
  const { db, view, logger, stats } = context;

  let running = false;
  let loop: Promise<void> | undefined;
  let wakeups: Wakeups | undefined;
  let unwatchLag: (() => void) | undefined;
  let wake: (() => void) | undefined;
  let woken = false;
  const inFlight = new Set<Promise<void>>();
  let idleWaiters: (() => void)[] = [];
  const batchesFromLog: LogBatches | undefined = logBatches(context);

  /** Waits `ms`, or less if woken (a wake-up that came while no one waited ends the next wait at once). */
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

  async function run() {
    const ceiling = await pollIntervalCeiling(context);
    let idleDelay = Math.min(25, ceiling);
    let errorDelay = 100;
    const sizing = leaseSizing(context);
    const advancer = frontierAdvancer(context);
    let lastLease = 0;
    while (running) {
      if (context.fatal.error !== undefined) {
        running = false;
        break;
      }
      const free = context.concurrency - inFlight.size;
      if (free <= 0) {
        await Promise.race(inFlight);
        continue;
      }
      let leased: LeasedEvent[];
      let fromLog = 0;
      // Taking the log in batches, the worker leaves the frontier to them.
      let advanceEvents: number | undefined;
      let claimed = false;
      if (batchesFromLog?.active) {
        if (batchesFromLog.pending) {
          fromLog = await batchesFromLog.run();
          claimed = true;
        }
        if (context.fatal.error !== undefined) continue;
        // After a full batch the log most likely has more: the next batch comes first, and leases (retries,
        // streams that were busy) get a turn at least once a second.
        if (fromLog > 0 && batchesFromLog.full && performance.now() - lastLease < leaseTurnMs) {
          idleDelay = Math.min(25, ceiling);
          continue;
        }
        // Leases read nothing into lock rows: the frontier is the batches', which read the events of streams that
        // need their leases into their lock rows. A lease that read ahead would send whole stretches through leases.
        advanceEvents = 0;
      }
      const streams = sizing.streams(free);
      try {
        stats.polls++;
        lastLease = performance.now();
        leased = await leaseEvents(db, view, {
          streams,
          eventsPerStream: context.batchSize,
          leaseSeconds: context.leaseSeconds,
          advanceEvents,
        });
        errorDelay = 100;
      } catch (error) {
        // The database went away, or refused: back off, keep our place (the leases and positions are in SQL).
        logger.warn('leasing failed; retrying', { view, error: describeError(error), retryInMs: errorDelay });
        await sleep(errorDelay);
        errorDelay = Math.min(errorDelay * 2, 30_000);
        continue;
      }
      const batches = groupByStream(view, leased);
      sizing.observe(streams, batches.length, leased.length);
      // A backlog: read the log ahead of the next leases (log batches read it themselves).
      if (batches.length >= streams && advanceEvents === undefined) advancer.nudge();
      for (const group of transactionGroups(batches, free)) {
        // A finished batch frees a slot and its stream may have more events: poll again at once.
        const work = processTransaction(context, group).finally(() => {
          inFlight.delete(work);
          wakeUp();
        });
        inFlight.add(work);
      }
      // A batch that moved the frontier without events for this view (it passed over events from before start_at,
      // of other deciders, or for leases) leaves it pending: the log has more at once, so no sleep either.
      if (leased.length > 0 || fromLog > 0 || (claimed && batchesFromLog?.pending)) {
        idleDelay = Math.min(25, ceiling);
        continue; // a backlog: poll again at once (for the slots still free)
      }
      try {
        if (await handleParkedRetry(context)) continue;
      } catch (error) {
        logger.warn('retrying a parked event failed', { view, error: describeError(error) });
      }
      if (inFlight.size === 0) {
        for (const resolve of idleWaiters) resolve();
        idleWaiters = [];
      }
      await Promise.race([sleep(idleDelay), ...(inFlight.size > 0 ? [Promise.race(inFlight)] : [])]);
      // Without wake-ups nothing else says so; with them, a missed one costs a poll interval at most.
      batchesFromLog?.logMoved();
      idleDelay = Math.min(idleDelay * 2, ceiling);
    }
    await advancer.stop();
  }

  return {
    view,
    stats,
    async start() {
      if (running) return;
      await ensureRegistered(context);
      running = true;
      // Before the first lease: the probe has read the head, so no event appended after that lease goes unnoticed.
      const started = await startWakeups(
        context.wakeups,
        db,
        () => {
          batchesFromLog?.logMoved();
          wakeUp();
        },
        logger,
      );
      if (!running) {
        await started?.close(); // stopped while starting
        return;
      }
      wakeups = started;
      unwatchLag = watchLag(db, view);
      loop = run().catch((error) => {
        logger.error('projection loop stopped', { view, error: describeError(error) });
      });
    },
    async stop({ timeoutMs = 10_000 } = {}) {
      if (!running && !loop) return;
      running = false;
      wakeUp();
      // At once, not after the batches in flight: the last worker of a database stops its probe now.
      const closing = wakeups?.close();
      wakeups = undefined;
      unwatchLag?.();
      unwatchLag = undefined;
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
      await closing;
      loop = undefined;
    },
    idle() {
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}

/** The longest idle wait: the option, else the view's registered polling delay, else 1000 ms. */
async function pollIntervalCeiling({ db, view, pollIntervalMs }: ProjectionContext): Promise<number> {
  if (pollIntervalMs !== undefined) return pollIntervalMs;
  const [row] = await db
    .select({ ms: views.poolingDelayMs, s: views.poolingDelayS })
    .from(views)
    .where(eq(views.view, view));
  return row?.ms ?? (row?.s != null ? row.s * 1000 : 1000);
}

/**
 * Registers the view, starting at `startAt` and subscribed to the declared deciders, unless it exists. An existing
 * view that does not subscribe to every declared decider is refused (SubscriptionMismatchError): changing what a
 * view reads is a rebuild, never a silent side effect of a deployment.
 * The look and the registration share one REPEATABLE READ transaction: two workers that find no view at once (a
 * rolling deployment whose versions declare different deciders) cannot both register it, since the second's
 * register_view would rebuild the view under the first. Its update of a row its snapshot does not see fails
 * (40001, or a deadlock), and it looks again: it then finds the first's view, and checks it like any existing one.
 */
async function ensureRegistered(context: ProjectionContext): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await context.db.transaction((tx) => lookOrRegister(tx, context), {
        isolationLevel: 'repeatable read',
      });
    } catch (error) {
      if (attempt >= 5 || !isTransientDatabaseError(error)) throw error;
    }
  }
}

async function lookOrRegister(
  db: Database,
  { view, declared, startAt, leaseSeconds, logger }: ProjectionContext,
): Promise<void> {
  const deciders = [...declared.keys()].sort();
  const [existing] = await db
    .select({ view: views.view, deciders: views.subscribedDeciders })
    .from(views)
    .where(eq(views.view, view));
  if (!existing) {
    await registerView(db, view, { startAt, leaseSeconds, deciders });
    logger.info('registered view', { view, deciders: deciders.join(',') });
    return;
  }
  if (existing.deciders == null) return;
  const subscribed = existing.deciders;
  const missing = deciders.filter((decider) => !subscribed.includes(decider));
  if (missing.length > 0) throw new SubscriptionMismatchError(view, subscribed, missing);
}
