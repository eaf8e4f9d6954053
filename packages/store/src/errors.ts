/**
 * Typed errors of the event store. SQL failures are mapped by SQLSTATE and constraint name (see the README's
 * table), never by reading the message. Anything not recognised, connection errors among them, passes through
 * untouched.
 */

/** Base class of every error fstore raises on purpose. */
export class FstoreError extends Error {
  override name = 'FstoreError';
}

/**
 * The stream already holds events of this command: an append once per command (a command handler's, or
 * `append(…, { oncePerCommand: true })`) found it applied before, and wrote nothing. Load the stream: the
 * command's events are there.
 */
export class CommandAlreadyAppliedError extends FstoreError {
  override name = 'CommandAlreadyAppliedError';
  constructor(
    readonly decider: string,
    readonly deciderId: string,
    readonly commandId: string,
    options?: ErrorOptions,
  ) {
    super(`command ${commandId} was already applied to stream ${deciderId} of ${decider}`, options);
  }
}

/** The stream did not end where the writer expected: someone else appended first. Reload and decide again. */
export class OptimisticConcurrencyError extends FstoreError {
  override name = 'OptimisticConcurrencyError';
  constructor(
    readonly decider: string,
    readonly deciderId: string,
    /** The last event id the writer saw; null for "the stream must not exist yet". */
    readonly expected: string | null,
    /** The stream's actual last event id (null: no event), or undefined when a concurrent commit won the race. */
    readonly found: string | null | undefined,
    options?: ErrorOptions,
  ) {
    super(
      `stream ${deciderId} of ${decider} was expected to end at ${expected ?? '(a new stream)'}, but ${
        found === undefined ? 'another writer appended first' : `it ends at ${found ?? '(no event)'}`
      }`,
      options,
    );
  }
}

/** An event id is already stored with other content. (The same id with the same content is an idempotent retry.) */
export class DuplicateEventError extends FstoreError {
  override name = 'DuplicateEventError';
  constructor(
    readonly eventId: string | undefined,
    options?: ErrorOptions,
  ) {
    super(`event ${eventId ?? '(unknown id)'} is already stored, with other content`, options);
  }
}

/** A final event closed the stream: nothing can be appended to it. */
export class StreamClosedError extends FstoreError {
  override name = 'StreamClosedError';
  constructor(
    readonly decider: string,
    readonly deciderId: string,
    options?: ErrorOptions,
  ) {
    super(
      `stream ${deciderId} of ${decider} is closed by a final event: nothing can be appended to it`,
      options,
    );
  }
}

/** Only a closed stream (its last event final) can be archived: this one is open. Nothing was moved. */
export class StreamNotClosedError extends FstoreError {
  override name = 'StreamNotClosedError';
  constructor(
    readonly decider: string,
    readonly deciderId: string,
    options?: ErrorOptions,
  ) {
    super(`stream ${deciderId} of ${decider} is open: only a closed stream can be archived`, options);
  }
}

/**
 * A view has not handled every event of the stream yet (events past its frontier, unacknowledged, or parked), so
 * archiving it would take them from the view. Nothing was moved: archive it once the view is done with it.
 */
export class StreamNotHandledError extends FstoreError {
  override name = 'StreamNotHandledError';
  constructor(
    readonly decider: string,
    readonly deciderId: string,
    readonly view: string,
    options?: ErrorOptions,
  ) {
    super(`view ${view} has not handled every event of stream ${deciderId} of ${decider} yet`, options);
  }
}

/** The event type (or this version of it) is not registered for the decider. Call `register()` at start-up. */
export class UnknownEventTypeError extends FstoreError {
  override name = 'UnknownEventTypeError';
  constructor(
    readonly decider: string,
    readonly types: readonly { type: string; version: number }[],
    options?: ErrorOptions,
  ) {
    super(
      `decider ${decider} has not registered ${types.map((t) => `${t.type} v${t.version}`).join(', ')}`,
      options,
    );
  }
}

export interface ValidationIssue {
  /** Where, as a path into the value: `data.items.0.sku`, `deciderId`. */
  path: string;
  message: string;
}

/** Input refused (before any SQL ran, or by SQL's own checks): nothing was written. Each issue names the field. */
export class ValidationError extends FstoreError {
  override name = 'ValidationError';
  constructor(
    readonly issues: readonly ValidationIssue[],
    options?: ErrorOptions,
  ) {
    super(issues.map((issue) => `${issue.path}: ${issue.message}`).join('; '), options);
  }
}

/** Metadata that SQL refused (`events_metadata_check`): not an object of the known keys, an id too long, over 8 KiB. */
export class InvalidMetadataError extends ValidationError {
  override name = 'InvalidMetadataError';
  constructor(options?: ErrorOptions) {
    super(
      [
        {
          path: 'metadata',
          message:
            'must be an object of correlationId and causationId (text of up to 200 characters), traceparent, tracestate (text) and headers (an object), within 8 KiB',
        },
      ],
      options,
    );
  }
}

/** An event's payload is larger than the store's cap (`maxPayloadBytes`). Nothing was written. */
export class PayloadTooLargeError extends FstoreError {
  override name = 'PayloadTooLargeError';
  constructor(
    readonly type: string,
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(`event ${type}: payload of ${bytes} bytes is over the cap of ${maxBytes} bytes`);
  }
}

/**
 * A personal field of a stored event was encrypted with a key that is neither in `subject_keys` nor among the keys
 * of a forgotten subject: keys deleted by hand, or a payload from another database. Nothing can read it.
 */
export class UnknownSubjectKeyError extends FstoreError {
  override name = 'UnknownSubjectKeyError';
  constructor(
    readonly eventId: string,
    readonly field: string,
    readonly keyId: string,
  ) {
    super(`event ${eventId}: field ${field} was encrypted with key ${keyId}, which is not known here`);
  }
}

/**
 * A stored event that the declaration cannot read: its type is not declared, its version is newer than the
 * declaration, or no upcaster leads from its version to the current one, or the upcast data fails the schema.
 */
export class UnreadableEventError extends FstoreError {
  override name = 'UnreadableEventError';
  constructor(
    readonly eventId: string,
    readonly type: string,
    readonly version: number,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`stored event ${eventId} (${type} v${version}) cannot be read: ${reason}`, options);
  }
}

/** What a database error looks like, from postgres.js (`constraint_name`) or PGlite (`constraint`). */
interface DatabaseErrorShape {
  code?: unknown;
  constraint_name?: unknown;
  constraint?: unknown;
  detail?: unknown;
  cause?: unknown;
}

/** Finds the database error in a chain of causes (drizzle wraps driver errors in DrizzleQueryError). */
export function databaseError(
  error: unknown,
): { code: string; constraint?: string; detail?: string } | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const shape = current as DatabaseErrorShape;
    if (typeof shape.code === 'string' && /^[0-9A-Z]{5}$/.test(shape.code)) {
      const constraint = shape.constraint_name ?? shape.constraint;
      return {
        code: shape.code,
        ...(typeof constraint === 'string' ? { constraint } : {}),
        ...(typeof shape.detail === 'string' ? { detail: shape.detail } : {}),
      };
    }
    current = shape.cause;
  }
  return undefined;
}

/**
 * Whether the database rolled the statement's transaction back for a serialization failure (40001) or a deadlock
 * (40P01): PostgreSQL's way of saying "run it again". Appends and projection batches do, by themselves.
 */
export function isTransientDatabaseError(error: unknown): boolean {
  const code = databaseError(error)?.code;
  return code === '40001' || code === '40P01';
}

/** The driver's codes for a connection that failed, closed or could not be opened. */
const connectionCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
]);

/**
 * Whether the connection failed, or the server went away or is not taking connections yet (a restart, a failover):
 * connection_exception (08xxx), admin_shutdown, crash_shutdown, cannot_connect_now (57P01-57P03), or the driver's
 * own codes. A statement that failed so may or may not have committed: only a retry that can tell (a command with
 * its id: see createCommandHandler) is safe. fstore's own errors never are.
 */
export function isConnectionError(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    if (current instanceof FstoreError) return false;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (connectionCodes.has(code) || /^08...$|^57P0[123]$/.test(code)))
      return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

export interface AppendContext {
  decider: string;
  deciderId: string;
  expected: string | null;
  commandId?: string;
  types: readonly { type: string; version: number }[];
}

/** Maps a failed append to a typed error, by SQLSTATE and constraint name. Unknown failures are returned as given. */
export function toAppendError(error: unknown, context: AppendContext): unknown {
  const db = databaseError(error);
  if (!db) return error;
  const { decider, deciderId, expected } = context;
  const key = `${db.code}:${db.constraint ?? ''}`;
  switch (key) {
    case '23514:events_expected_last_event': {
      const { found } = parseDetail(db.detail) as { found?: string | null };
      return new OptimisticConcurrencyError(decider, deciderId, expected, found ?? null, { cause: error });
    }
    case '23505:events_previous_id_key':
    case '23505:events_first_event_key':
      return new OptimisticConcurrencyError(decider, deciderId, expected, undefined, { cause: error });
    case '23514:events_previous_id_required':
    case '23514:events_previous_id_same_stream':
      return new OptimisticConcurrencyError(decider, deciderId, expected, undefined, { cause: error });
    case '23514:events_stream_not_final':
      return new StreamClosedError(decider, deciderId, { cause: error });
    case '23505:events_event_id_key': {
      const { event_id } = parseDetail(db.detail) as { event_id?: string };
      return new DuplicateEventError(event_id ?? eventIdFromKeyDetail(db.detail), { cause: error });
    }
    case '23505:events_command_applied': {
      const { command_id } = parseDetail(db.detail) as { command_id?: string };
      return new CommandAlreadyAppliedError(decider, deciderId, command_id ?? context.commandId ?? '', {
        cause: error,
      });
    }
    case '23514:events_metadata_check':
      return new InvalidMetadataError({ cause: error });
    case '23503:events_decider_event_fkey':
      return new UnknownEventTypeError(decider, context.types, { cause: error });
    default:
      return error;
  }
}

function parseDetail(detail: string | undefined): Record<string, unknown> {
  if (!detail?.startsWith('{')) return {};
  try {
    return JSON.parse(detail) as Record<string, unknown>;
  } catch {
    return {};
  }
}

// PostgreSQL's own unique-violation detail: `Key (event_id)=(…) already exists.` The id is a convenience; the
// error class was already chosen by SQLSTATE and constraint.
function eventIdFromKeyDetail(detail: string | undefined): string | undefined {
  return detail?.match(/\(event_id\)=\(([0-9a-f-]{36})\)/)?.[1];
}
