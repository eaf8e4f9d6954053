import type { Database, DeciderEvents, EventDefinitions, EventOf, StoredEvent } from '@fstore/store';
import type { Logger, ProjectionMetrics } from '../observability.js';
import type { WakeupMode } from '../wakeups.js';

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
   * The deciders whose events the handler reads: the view is registered subscribed to them, so events of other
   * deciders are never delivered (on a view that subscribes to every decider, they are acknowledged without a
   * call). A view that does not subscribe to one of them stops the worker (SubscriptionMismatchError). An
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
   * Streams handled in one transaction, when their batches are small (one event each, say): one transaction, one
   * acknowledgement and one lease renewal for them all. If a handler fails, its stream is handled again on its own
   * and the others together. A poll leases this many streams per free slot; while leases come back full of small
   * streams, twice as many at each poll, up to 256 a poll, so that a backlog of one-event streams costs a lease and
   * a transaction per few hundred streams. Default 20.
   */
  streamsPerTransaction?: number;
  /** Lease length in seconds; renewed every third of it while a batch runs. Default 30. */
  leaseSeconds?: number;
  /**
   * The longest a batch's transaction may run, in seconds: past it the worker ends the transaction's session, so a
   * hung handler or driver cannot hold a stream for ever; the stream is delivered again. Default 600.
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
  /**
   * What wakes an idle worker before `pollIntervalMs` is out (docs/operations.md#wake-ups):
   * - `'probe'` (default): one probe of the log's head (`log_head()`) every 15 ms, shared by every worker of this
   *   process on the same `db`; it costs appends nothing;
   * - `'notify'`: LISTEN for the NOTIFY that `set_wakeups(true)` adds to every append: under a millisecond, but it
   *   serialises the commits of appending transactions (about half the append throughput on durable settings);
   * - `'off'`: polling only.
   * `true` and `false`, the older spelling, mean `'notify'` and `'off'`.
   */
  wakeups?: WakeupMode | boolean;
  /**
   * Whether a worker behind takes new streams straight from the log (`claim_log_batch`): many streams' events in
   * one transaction, with no lease or acknowledgement per stream, while other streams keep their leases. Default
   * true; it pauses itself while handlers take over 5 ms an event, where leases let workers share the work.
   */
  logBatches?: boolean;
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
   * Stops leasing and its wake-ups (at once: the last worker on a database stops the probe), and lets in-flight
   * batches finish (up to `timeoutMs`, default 10 s; then signals them to abort). Resolves within about `timeoutMs`.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
  /** Resolves at the next moment the worker has nothing leased and the last poll found nothing (for tests, tools). */
  idle(): Promise<void>;
}
