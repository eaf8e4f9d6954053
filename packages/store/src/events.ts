/**
 * Declaring a decider's events once: name, version, payload type, optional runtime validator (any Standard Schema:
 * zod, valibot, arktype…), whether it closes the stream, and upcasters from older versions. Everything else (the
 * union type, registration, validation before SQL, decoding on load) is derived from this declaration.
 */
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { UnreadableEventError, ValidationError, type ValidationIssue } from './errors.js';
import type { Metadata } from './metadata.js';
import {
  type Forgettable,
  openPersonalFields,
  type PersonalFields,
  type SubjectKeys,
} from './personal-data.js';

const noSubjectKeys: SubjectKeys = new Map();

/** Turns the payload of version n into the payload of version n + 1. */
export type Upcaster = (data: unknown) => unknown;

export interface EventOptions {
  /** The current version, written with every new event. Default 1. */
  version?: number;
  /** Stored in `deciders.description` when the type is registered. */
  description?: string;
  /** An event of this type closes its stream: nothing can be appended after it. */
  final?: boolean;
  /** Upcasters keyed by the version they read: `{ 1: (v1) => v2, 2: (v2) => v3 }` for a type at version 3. */
  upcast?: Record<number, Upcaster>;
}

/** The options of an event type with personal data: which fields, about which subject (see personal-data.ts). */
export interface PersonalEventOptions<TData, K extends keyof TData & string> extends EventOptions {
  personal: PersonalFields<TData, K>;
}

export interface EventDefinition<TData> {
  readonly version: number;
  readonly description: string | undefined;
  readonly final: boolean;
  readonly schema: StandardSchemaV1<unknown, TData> | undefined;
  readonly upcast: Readonly<Record<number, Upcaster>>;
  /** The payload's personal fields and their subject: encrypted before SQL, forgettable. */
  readonly personal: PersonalFields | undefined;
  /** Carries the payload type; never set at run time. */
  readonly __data?: TData;
}

/** Declares an event type whose payload is validated by a Standard Schema; the payload type comes from it. */
export function event<TSchema extends StandardSchemaV1>(
  options: EventOptions & { schema: TSchema },
): EventDefinition<StandardSchemaV1.InferOutput<TSchema>>;
/**
 * Declares an event type with personal fields: `event<Signup, 'email'>({ personal: { subject: (d) => d.customerId,
 * fields: ['email'] } })`. Its payload reads with those fields as `T | Forgotten`: once the subject is forgotten,
 * they hold the placeholder.
 */
export function event<TData, K extends keyof TData & string>(
  options: PersonalEventOptions<TData, K>,
): EventDefinition<Forgettable<TData, K>>;
/** Declares an event type with the payload type given: `event<{ orderId: string }>()`. */
export function event<TData>(options?: EventOptions): EventDefinition<TData>;
export function event(
  options: EventOptions & { schema?: StandardSchemaV1; personal?: PersonalFields<never, string> } = {},
): EventDefinition<unknown> {
  const version = options.version ?? 1;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new TypeError(`event version must be a whole number of 1 or more, got ${version}`);
  }
  return {
    version,
    description: options.description,
    final: options.final ?? false,
    schema: options.schema,
    upcast: { ...options.upcast },
    personal: options.personal as PersonalFields | undefined,
  };
}

export type EventDefinitions = Record<string, EventDefinition<unknown>>;

/** One decider's declared events. */
export interface DeciderEvents<TDefinitions extends EventDefinitions> {
  readonly decider: string;
  readonly definitions: TDefinitions;
}

/** Declares the events a decider publishes: `defineEvents('Order', { OrderPlaced: event<…>(), … })`. */
export function defineEvents<const TDefinitions extends EventDefinitions>(
  decider: string,
  definitions: TDefinitions,
): DeciderEvents<TDefinitions> {
  if (decider.length === 0) throw new TypeError('a decider needs a name');
  if (Object.keys(definitions).length === 0) throw new TypeError(`decider ${decider} declares no event`);
  return { decider, definitions };
}

type DataOf<TDefinition> = TDefinition extends EventDefinition<infer TData> ? TData : never;

/** The discriminated union of a decider's events: `{ type: 'OrderPlaced'; data: … } | …`. */
export type EventOf<TEvents extends DeciderEvents<EventDefinitions>> = {
  [K in keyof TEvents['definitions'] & string]: { type: K; data: DataOf<TEvents['definitions'][K]> };
}[keyof TEvents['definitions'] & string];

/** What the log adds to an event when it stores it. */
export interface EventMetadata {
  eventId: string;
  version: number;
  decider: string;
  deciderId: string;
  commandId: string;
  previousId: string | null;
  final: boolean;
  createdAt: Date;
  offset: number;
  transactionId: string;
  /** What the writer attached (correlation, causation, trace, headers), or null when it attached nothing. */
  metadata: Metadata | null;
}

/** A stored event: the typed event and its metadata. */
export type StoredEvent<TEvent> = TEvent & EventMetadata;

/** A place in one stream: what a writer waits on to read its own write (`waitForView` in @fstore/stream). */
export interface StreamPosition {
  deciderId: string;
  /** The offset of an event of the stream: the last one written, for read-your-writes. */
  offset: number;
}

/** Where `events` (appended to one stream, in order) end: their last event's stream and offset. */
export function positionAfter(events: readonly EventMetadata[]): StreamPosition | undefined {
  const last = events.at(-1);
  return last ? { deciderId: last.deciderId, offset: last.offset } : undefined;
}

/** Runs a Standard Schema (sync or async) and returns its issues as paths. */
export async function validateWithSchema(
  schema: StandardSchemaV1,
  value: unknown,
  pathPrefix: string,
): Promise<{ value: unknown } | { issues: ValidationIssue[] }> {
  const result = await schema['~standard'].validate(value);
  if (!result.issues) return { value: result.value };
  return {
    issues: result.issues.map((issue) => ({
      path: [
        pathPrefix,
        ...(issue.path ?? []).map((segment) => String(typeof segment === 'object' ? segment.key : segment)),
      ].join('.'),
      message: issue.message,
    })),
  };
}

/** Encodes an event for writing: known type, valid payload (when a schema is declared). */
export async function checkEventForWrite(
  events: DeciderEvents<EventDefinitions>,
  input: { type: string; data: unknown },
  path: string,
): Promise<{ definition: EventDefinition<unknown>; data: unknown }> {
  const definition = Object.hasOwn(events.definitions, input.type)
    ? events.definitions[input.type]
    : undefined;
  if (!definition) {
    throw new ValidationError([
      { path: `${path}.type`, message: `${input.type} is not an event of ${events.decider}` },
    ]);
  }
  if (!definition.schema) return { definition, data: input.data };
  const result = await validateWithSchema(definition.schema, input.data, `${path}.data`);
  if ('issues' in result) throw new ValidationError(result.issues);
  return { definition, data: result.value };
}

/** Decodes a stored payload into the declared type: upcasts older versions, validates when a schema is declared. */
export async function decodeStoredData(
  events: DeciderEvents<EventDefinitions>,
  stored: { eventId: string; type: string; version: number; data: unknown },
  validate: boolean,
  keys: SubjectKeys = noSubjectKeys,
): Promise<unknown> {
  const { eventId, type, version } = stored;
  const definition = Object.hasOwn(events.definitions, type) ? events.definitions[type] : undefined;
  if (!definition)
    throw new UnreadableEventError(eventId, type, version, `${events.decider} declares no such event`);
  if (version > definition.version) {
    throw new UnreadableEventError(
      eventId,
      type,
      version,
      `the declaration knows versions up to ${definition.version}`,
    );
  }
  // Personal fields first: upcasters and schemas see the payload as it was written, or the placeholder.
  const opened = openPersonalFields(eventId, stored.data, keys);
  let data = opened.data;
  for (let from = version; from < definition.version; from++) {
    const upcaster = definition.upcast[from];
    if (!upcaster) {
      throw new UnreadableEventError(
        eventId,
        type,
        version,
        `no upcaster from version ${from} to ${from + 1}`,
      );
    }
    data = upcaster(data);
  }
  // A forgotten field no longer matches the schema it was written under: what remains was validated then.
  if (definition.schema && !opened.forgotten && (validate || version < definition.version)) {
    const result = await validateWithSchema(definition.schema, data, 'data');
    if ('issues' in result) {
      const reason = result.issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ');
      throw new UnreadableEventError(
        eventId,
        type,
        version,
        `it does not match the declared schema (${reason})`,
      );
    }
    data = result.value;
  }
  return data;
}
