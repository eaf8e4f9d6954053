/**
 * Logging and metrics. Nothing is printed unless a logger is given. Metrics go to OpenTelemetry when the application
 * has `@opentelemetry/api` (the global meter provider's meter `@fstore/stream`; nothing without an SDK), and to the
 * hooks of `metrics` when given: counters and histograms by name with attributes, for another metrics library.
 * The names and units are in docs/operations.md#opentelemetry.
 */
import { addToCounter, recordInHistogram } from '@fstore/store/internal';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger that writes one JSON line per entry to stderr, for processes that want one quickly. */
export const jsonLogger: Logger = Object.fromEntries(
  (['debug', 'info', 'warn', 'error'] as const).map((level) => [
    level,
    (message: string, fields?: LogFields) =>
      process.stderr.write(
        `${JSON.stringify({ level, time: new Date().toISOString(), message, ...fields })}\n`,
      ),
  ]),
) as unknown as Logger;

/**
 * Counters: `fstore.projection.handled`, `.failed`, `.parked`, `.lease_lost`, `.reruns`.
 * Histograms: `fstore.projection.batch_ms` (lease to acknowledgement of one stream's batch).
 */
export interface ProjectionMetrics {
  count(name: string, value: number, attributes: Record<string, string>): void;
  record(name: string, value: number, attributes: Record<string, string>): void;
}

export const meterScope = '@fstore/stream';

/** The counters, as OpenTelemetry instruments: the hooks' names, with a unit and a description. */
const counters: Record<string, { description: string; unit: string }> = {
  'fstore.projection.handled': { description: 'Events handled and acknowledged', unit: '{event}' },
  'fstore.projection.failed': { description: 'Deliveries whose handler failed', unit: '{event}' },
  'fstore.projection.parked': { description: 'Events parked after their last attempt', unit: '{event}' },
  'fstore.projection.lease_lost': {
    description: 'Batches rolled back: their lease was lost',
    unit: '{batch}',
  },
  'fstore.projection.reruns': {
    description: 'Batches run again after a serialization failure or a deadlock',
    unit: '{batch}',
  },
};
/** The histogram, in seconds as OpenTelemetry's conventions want durations (the hooks get milliseconds). */
const batchDuration = {
  name: 'fstore.projection.batch.duration',
  description: 'A batch, from its transaction to its acknowledgement',
  unit: 's',
};

/** Sends each metric to OpenTelemetry (when installed) and to the hooks (when given). */
export function projectionMetrics(hooks: ProjectionMetrics | undefined): ProjectionMetrics {
  return {
    count(name, value, attributes) {
      const counter = counters[name];
      if (counter) addToCounter(meterScope, name, counter, value, attributes);
      hooks?.count(name, value, attributes);
    },
    record(name, value, attributes) {
      if (name === 'fstore.projection.batch_ms')
        recordInHistogram(meterScope, batchDuration.name, batchDuration, value / 1000, attributes);
      hooks?.record(name, value, attributes);
    },
  };
}
