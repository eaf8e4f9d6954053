export * from './deprecated.js';
export {
  checkInstalled,
  describeFailure,
  type ErrorLineOptions,
  type Failure,
  FstoreNotInstalledError,
  reportFailure,
  UsageError,
} from './error-line.js';
export {
  EventParkedError,
  HistoryMissingError,
  LeaseLostError,
  SubscriptionMismatchError,
  TransactionLostError,
  ViewPositionError,
  ViewWaitTimeoutError,
} from './errors.js';
export {
  ackEvent,
  ackEvents,
  ackLeases,
  batchMarker,
  claimLogBatch,
  discardParkedEvent,
  type FailureOutcome,
  failEvent,
  type LeasedEvent,
  type LogBatch,
  leaseEvents,
  listParkedEvents,
  type MissingHistory,
  missingHistory,
  nackEvent,
  type RegisterViewOptions,
  registerView,
  releaseLease,
  renewLease,
  resetView,
  retryParkedEvent,
  scheduleNackEvent,
  setWakeups,
  streamEvents,
  type ViewLag,
  type ViewStatus,
  type ViewSubscription,
  viewLag,
  viewStatus,
} from './functions.js';
export {
  jsonLogger,
  type LogFields,
  type Logger,
  type ProjectionMetrics,
  silentLogger,
} from './observability.js';
export {
  createProjection,
  type HandlerContext,
  type ProjectedEvent,
  type Projection,
  type ProjectionOptions,
  type ProjectionStats,
  type Transaction,
} from './projection.js';
export {
  type ViewReached,
  viewReached,
  type WaitForViewOptions,
  waitForView,
} from './read-your-writes.js';
export { type RebuildOptions, rebuildProjection } from './rebuild.js';
export { formatStatusTable } from './status.js';
export { type WakeupMode, wakeupChannel } from './wakeups.js';
