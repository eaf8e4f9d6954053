/**
 * `@fstore/store/internal`: the helpers @fstore/stream builds on (raw statements, row decoding, input checks, the
 * database error under a driver's wrapping). Not public API: they may change in any release.
 */
export { decodeEventRow, queryRows, rowDecoder } from './database.js';
export { databaseError } from './errors.js';
export { decodeMetadata } from './metadata.js';
export {
  addToCounter,
  type GaugeReading,
  type InstrumentOptions,
  inSpan,
  type MetricAttributes,
  observeGauges,
  recordInHistogram,
  type SpanAttributes,
  type SpanOptions,
  type SpanScope,
  tracing,
} from './telemetry.js';
export { Issues, limits } from './validation.js';
