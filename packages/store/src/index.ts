export {
  type ArchiveClosedStreamsOptions,
  type ArchivedStream,
  archiveClosedStreams,
  archiveStream,
  getArchivedStream,
  type RemoveArchivedStreamsOptions,
  removeArchivedStreams,
} from './archive.js';
export {
  type CommandHandler,
  type CommandHandlerOptions,
  createCommandHandler,
  type Decider,
  type HandledCommand,
  type HandleOptions,
  type SnapshotOptions,
} from './command-handler.js';
export type { Database } from './database.js';
export * from './deprecated.js';
export {
  CommandAlreadyAppliedError,
  DuplicateEventError,
  FstoreError,
  InvalidMetadataError,
  isConnectionError,
  isTransientDatabaseError,
  OptimisticConcurrencyError,
  PayloadTooLargeError,
  StreamClosedError,
  StreamNotClosedError,
  StreamNotHandledError,
  UnknownEventTypeError,
  UnknownSubjectKeyError,
  UnreadableEventError,
  ValidationError,
  type ValidationIssue,
} from './errors.js';
export {
  type AppendInput,
  type AppendOptions,
  createEventStore,
  EventStore,
  type EventStoreOptions,
  type LoadedStream,
  type ReadFrom,
  toStoredEvent,
} from './event-store.js';
export {
  type DeciderEvents,
  defineEvents,
  type EventDefinition,
  type EventDefinitions,
  type EventMetadata,
  type EventOf,
  type EventOptions,
  event,
  type PersonalEventOptions,
  positionAfter,
  type StoredEvent,
  type StreamPosition,
  type Upcaster,
} from './events.js';
export {
  type AppendEventInput,
  type AppendEventsInput,
  appendEvent,
  appendEvents,
  deleteSnapshots,
  forgetSubject,
  getCorrelatedEvents,
  getEvent,
  getEvents,
  getLastEvent,
  getSnapshot,
  registerDeciderEvent,
  rotateSubjectKey,
  saveSnapshot,
} from './functions.js';
export { causedBy, type JsonValue, type Metadata } from './metadata.js';
export {
  type Forgettable,
  type Forgotten,
  forgotten,
  isForgotten,
  type PersonalFields,
  type SubjectKeys,
  subjectKeysFor,
} from './personal-data.js';
export {
  eventsBetween,
  eventsInOffsetRange,
  eventsOfCommand,
  eventsOfCorrelation,
  eventsOfStream,
  eventsOfType,
  streamsOfDecider,
  viewProgress,
} from './queries.js';
