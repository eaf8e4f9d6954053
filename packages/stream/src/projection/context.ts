/** What the parts of a worker share: its options with their defaults, checked once, its counters, its stop signal. */
import type { Database, DeciderEvents, EventDefinitions } from '@fstore/store';
import { Issues, limits } from '@fstore/store/internal';
import { type Logger, type ProjectionMetrics, projectionMetrics, silentLogger } from '../observability.js';
import type { WakeupMode } from '../wakeups.js';
import type { ProjectionOptions, ProjectionStats } from './types.js';

/** The deciders of a projection, once the worker no longer needs their precise types. */
export type AnyDeciders = readonly DeciderEvents<EventDefinitions>[];

export interface ProjectionContext {
  readonly db: Database;
  readonly view: string;
  readonly handle: ProjectionOptions<AnyDeciders>['handle'];
  /** The declared deciders, by name. */
  readonly declared: ReadonlyMap<string, DeciderEvents<EventDefinitions>>;
  readonly concurrency: number;
  readonly batchSize: number;
  readonly streamsPerTransaction: number;
  readonly leaseSeconds: number;
  readonly maxBatchSeconds: number;
  readonly maxAttempts: number;
  readonly backoff: { readonly initialMs: number; readonly maxMs: number };
  /** Undefined: the view's registered polling delay. */
  readonly pollIntervalMs: number | undefined;
  readonly startAt: Date;
  readonly onParked: 'continue' | 'stop';
  readonly wakeups: WakeupMode;
  readonly logBatches: boolean;
  readonly logger: Logger;
  /** OpenTelemetry's instruments (when installed) and the option's hooks. */
  readonly metrics: ProjectionMetrics;
  /** The attributes of every metric. */
  readonly attributes: { view: string };
  readonly stats: ProjectionStats;
  /** Aborted when stop() stops waiting for the batches in flight: they give up. */
  readonly stopping: AbortSignal;
  /** Set when the worker must stop polling: its view now subscribes to a decider it does not declare. */
  readonly fatal: { error: unknown };
}

/** Checks the options (throwing ValidationError) and fills in their defaults. */
export function projectionContext(
  options: ProjectionOptions<AnyDeciders>,
  stopping: AbortSignal,
): ProjectionContext {
  const { db, view, handle } = options;
  const concurrency = options.concurrency ?? 4;
  const batchSize = options.batchSize ?? 100;
  const streamsPerTransaction = Math.max(1, options.streamsPerTransaction ?? 20);
  const leaseSeconds = options.leaseSeconds ?? 30;
  const maxBatchSeconds = options.maxBatchSeconds ?? 600;
  const maxAttempts = options.maxAttempts ?? 5;
  const initialMs = options.backoff?.initialMs ?? 200;
  const maxMs = options.backoff?.maxMs ?? 60_000;
  const issues = new Issues();
  issues.text('view', view, limits.maxNameLength);
  issues.whole('concurrency', concurrency, 1, 1000);
  issues.whole('batchSize', batchSize, 1, 100_000);
  issues.whole('streamsPerTransaction', streamsPerTransaction, 1, 10_000);
  issues.whole('leaseSeconds', leaseSeconds, 1, 86_400);
  issues.whole('maxBatchSeconds', maxBatchSeconds, 1, 864_000);
  issues.whole('maxAttempts', maxAttempts, 1, 1_000_000);
  issues.whole('backoff.initialMs', initialMs, 0);
  issues.whole('backoff.maxMs', maxMs, 0);
  if (options.pollIntervalMs !== undefined) issues.whole('pollIntervalMs', options.pollIntervalMs, 0);
  const wakeups = wakeupMode(options.wakeups);
  if (wakeups === undefined) issues.add('wakeups', "must be 'probe', 'notify' or 'off'");
  if (options.logBatches !== undefined && typeof options.logBatches !== 'boolean')
    issues.add('logBatches', 'must be true or false');
  if (!Array.isArray(options.events) || options.events.length === 0)
    issues.add('events', 'must declare at least one decider');
  issues.throwIfAny();
  return {
    db,
    view,
    handle,
    declared: new Map(options.events.map((declared) => [declared.decider, declared])),
    concurrency,
    batchSize,
    streamsPerTransaction,
    leaseSeconds,
    maxBatchSeconds,
    maxAttempts,
    backoff: { initialMs, maxMs },
    pollIntervalMs: options.pollIntervalMs,
    startAt: options.startAt ?? new Date(0),
    onParked: options.onParked ?? 'continue',
    wakeups: wakeups ?? 'probe',
    logBatches: options.logBatches ?? true,
    logger: { ...silentLogger, ...options.logger },
    metrics: projectionMetrics(options.metrics),
    attributes: { view },
    stats: { handled: 0, failed: 0, parked: 0, leaseLost: 0, polls: 0 },
    stopping,
    fatal: { error: undefined },
  };
}

/** The wake-up option as a mode; undefined when it is none. */
function wakeupMode(option: ProjectionOptions<AnyDeciders>['wakeups']): WakeupMode | undefined {
  if (option === undefined) return 'probe';
  if (option === true) return 'notify';
  if (option === false) return 'off';
  return option === 'probe' || option === 'notify' || option === 'off' ? option : undefined;
}

/** An error as a log field: its stack, or what it says, cut to 4000 characters. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return (error.stack ?? `${error.name}: ${error.message}`).slice(0, 4000);
  return String(error).slice(0, 4000);
}
