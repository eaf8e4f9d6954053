/**
 * Event metadata: what a writer attaches to the events of one append (the `metadata` column): the conversation they
 * belong to (correlation id), what caused them (causation id), the trace that wrote them (W3C trace context) and
 * free-form headers. SQL owns the rules (`events_metadata_check`: an object of these keys, ids of up to 200
 * characters, 8 KiB in all); this file only names the keys, camelCase here and snake_case in SQL.
 */
import type { EventMetadata } from './events.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface Metadata {
  /** The conversation the events belong to (a request, a workflow): `eventsOfCorrelation` finds them all. */
  correlationId?: string;
  /** What caused them: the command's id by default, or the event a projection handled (`causedBy`). */
  causationId?: string;
  /** The W3C trace context of the span that appended them: a projection's span links back to it. */
  traceparent?: string;
  tracestate?: string;
  /** Anything else: a user, a tenant, a client version. */
  headers?: Record<string, JsonValue>;
}

const columns = [
  ['correlationId', 'correlation_id'],
  ['causationId', 'causation_id'],
  ['traceparent', 'traceparent'],
  ['tracestate', 'tracestate'],
  ['headers', 'headers'],
] as const;

/**
 * The stored form: known keys renamed, absent ones left out, null when nothing is left. Any other key passes as it
 * is, so that SQL refuses it (InvalidMetadataError) rather than this function dropping it unseen.
 */
export function encodeMetadata(metadata: Metadata | undefined): Record<string, unknown> | null {
  if (metadata === undefined || metadata === null) return null;
  if (typeof metadata !== 'object' || Array.isArray(metadata)) return metadata as never;
  const stored: Record<string, unknown> = {};
  const known = new Map<string, string>(columns);
  for (const [key, value] of Object.entries(metadata)) {
    if (value !== undefined) stored[known.get(key) ?? key] = value;
  }
  return Object.keys(stored).length > 0 ? stored : null;
}

/** The stored form read back (as the SQL check lets it be): keys renamed, absent ones left out. */
export function decodeMetadata(stored: unknown): Metadata | null {
  if (stored === null || stored === undefined || typeof stored !== 'object') return null;
  const metadata: Record<string, unknown> = {};
  for (const [field, column] of columns) {
    const value = (stored as Record<string, unknown>)[column];
    if (value !== undefined && value !== null) metadata[field] = value;
  }
  return metadata as Metadata;
}

/**
 * The metadata of events that `event` causes, for a projection (or any reactor) that appends in answer to it: the
 * same correlation id (the event's own id when it has none: it starts the conversation) and the event as their
 * cause. Pass it on: `commands(id, command, { metadata: causedBy(event) })`.
 */
export function causedBy(event: Pick<EventMetadata, 'eventId' | 'metadata'>): Metadata {
  return {
    correlationId: event.metadata?.correlationId ?? event.eventId,
    causationId: event.eventId,
  };
}
