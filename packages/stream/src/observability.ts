/**
 * Logging and metrics are injected: nothing is printed unless a logger is given. The metrics hooks are counters
 * and histograms by name with attributes, the shape of OpenTelemetry's instruments:
 *
 *   const meter = metrics.getMeter('fstore');
 *   const counters = new Map(), histograms = new Map();
 *   const otel: ProjectionMetrics = {
 *     count: (name, value, attrs) => (counters.get(name) ?? counters.set(name, meter.createCounter(name)).get(name)).add(value, attrs),
 *     record: (name, value, attrs) => (histograms.get(name) ?? histograms.set(name, meter.createHistogram(name)).get(name)).record(value, attrs),
 *   };
 */

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
 * Counters: `fstore.projection.handled`, `.failed`, `.parked`, `.lease_lost`.
 * Histograms: `fstore.projection.batch_ms` (lease to acknowledgement of one stream's batch).
 */
export interface ProjectionMetrics {
  count(name: string, value: number, attributes: Record<string, string>): void;
  record(name: string, value: number, attributes: Record<string, string>): void;
}
