/**
 * The bad-input catalogue of the SQL API. For every function and every parameter: a null, and values of the wrong
 * type or out of range, each refused with a clear SQLSTATE, nothing written (every row of fstore's tables is
 * compared before and after) and the same connection still usable. Where a null is legitimately accepted, the test
 * says so in its name and checks what it does instead. Then: injection attempts and unicode in names, malformed and
 * very large payloads, and a failure inside a transaction (the transaction rolls back, the connection stays usable).
 * The checks themselves are in test-support/refusals.ts. Elsewhere: acknowledgements that must not move a stream
 * (acknowledgements.test.ts), and views registered while appends run (view-registration-during-appends.test.ts).
 *
 * The SQLSTATEs:
 *   23502 not_null_violation        a null where a column needs a value
 *   22023 invalid_parameter_value   the functions' own argument checks (limits, seconds, milliseconds, flags, an
 *                                   offset that is not an event of the stream, events that are not a JSON array),
 *                                   and bytea text that is not hex
 *   22P02 invalid_text_representation  a value that does not parse as the parameter's type (uuid, bigint, int,
 *                                   boolean, jsonb)
 *   22007 invalid_datetime_format   the same for timestamps
 *   22003 numeric_value_out_of_range  beyond int or bigint, or an overflow in the function's arithmetic
 *   22008 datetime_field_overflow   milliseconds so large that now() plus them is no timestamp
 *   22021 character_not_in_repertoire  NUL in text
 *   22P05 untranslatable_character  \u0000 in JSON
 *   23514 check_violation           a table check (views_*_check) or an append check (events_*)
 *   22023 (constraint views_subscription)  a subscription that is an empty array or holds a NULL (NULL itself
 *                                   means every decider, or every event type)
 *   23503 foreign_key_violation     an event type or version the decider has not registered
 *   23505 unique_violation          an event id already stored
 *   42883 undefined_function        an argument of another type: no such function
 *   55P03 lock_not_available        (constraint locks_lease_held) a lease that is not held
 *   P0002 no_data_found             no such parked event, or view to reset, advance or lease from
 *
 * Every argument is sent as text and cast in SQL ($1::text::uuid), so that what reaches PostgreSQL is exactly the
 * value under test: postgres.js would otherwise serialise some values itself (any non-true value bound to a boolean
 * parameter becomes false, a string bound to jsonb is JSON-encoded again).
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { appendOne, decider, registerDecider } from './test-support/decider-fixture.js';
import {
  INVALID,
  LEASE_LOST,
  NO_DATA,
  NOT_NULL,
  type Refusal,
  refusalChecks,
} from './test-support/refusals.js';
import { failureOf } from './test-support/sql-client.js';

const db = await createTestDatabase();
afterAll(() => db.drop());
/** One connection for the whole catalogue: every failure must leave it usable. */
const conn = db.connect({ max: 1 });

type Value = string | null;

/** Refused, nothing written, the connection still usable: the checks every failure below passes. */
const { contents, usable, expectRefused } = refusalChecks(db.sql, conn);

/** Runs `statement` in a transaction that is rolled back; returns its rows. */
async function inRollback(statement: string, args: Value[]): Promise<postgres.Row[]> {
  const marker = new Error('roll back');
  let rows: postgres.Row[] = [];
  await conn
    .begin(async (tx) => {
      rows = await tx.unsafe(statement, args);
      throw marker;
    })
    .catch((error: unknown) => {
      if (error !== marker) throw error;
    });
  return rows;
}

/** Runs `fn` in a transaction that is rolled back. */
async function rolledBack(fn: (tx: postgres.Sql) => Promise<void>) {
  const marker = new Error('roll back');
  await conn
    .begin(async (tx) => {
      await fn(tx as unknown as postgres.Sql);
      throw marker;
    })
    .catch((error: unknown) => {
      if (error !== marker) throw error;
    });
}

// --- The fixture: a decider, two streams, a view with both streams leased, and a parked event in another view ---

const fixture = {
  stream: `stream-${randomUUID()}`,
  other: `other-${randomUUID()}`,
  view: `view-${randomUUID()}`,
  parkedView: `parked-${randomUUID()}`,
  /** A view where the other stream's event is parked and its retry requested (claim, ack and fail parked events). */
  retryView: `retry-${randomUUID()}`,
  offsets: [] as string[],
  ids: [] as string[],
  /** The command of the stream's first event. */
  commandId: randomUUID(),
  otherOffset: '',
  otherId: '',
  lease: '',
  /** A closed stream archived before any view existed (archive_stream returns its row again). */
  archived: `archived-${randomUUID()}`,
};

beforeAll(async () => {
  await registerDecider(conn);
  await conn`SELECT * FROM append_event('created', ${randomUUID()}, ${decider}, ${fixture.archived}, '{}',
                                        ${randomUUID()}, NULL, 1, true)`;
  await conn`SELECT * FROM archive_stream(${decider}, ${fixture.archived})`;
  await conn`SELECT * FROM register_decider_event(${decider}, 'created', 'second shape', 2)`;
  await conn`SELECT * FROM register_decider_event(${decider}, 'renamed')`;
  let previous: string | null = null;
  for (let i = 0; i < 3; i++) {
    const row = await appendOne(conn, fixture.stream, previous, i === 0 ? fixture.commandId : undefined);
    fixture.offsets.push(row.offset);
    fixture.ids.push(row.event_id);
    previous = row.event_id;
  }
  const other = await appendOne(conn, fixture.other, null);
  fixture.otherOffset = other.offset;
  fixture.otherId = other.event_id;
  await conn`SELECT * FROM register_view(${fixture.view}, '2000-01-01'::timestamp)`;
  const leased = await conn<{ lease_id: string }[]>`
    SELECT * FROM lease_events(${fixture.view}, 1000, 1, 300) WHERE decider_id = ${fixture.stream}`;
  fixture.lease = leased[0]?.lease_id as string;
  await conn`SELECT * FROM register_view(${fixture.parkedView}, '2000-01-01'::timestamp)`;
  const [parked] = await conn<{ lease_id: string }[]>`
    SELECT * FROM lease_events(${fixture.parkedView}, 1000, 1, 300) WHERE decider_id = ${fixture.other}`;
  await conn`SELECT fail_event(${fixture.parkedView}, ${fixture.other}, ${parked?.lease_id ?? null}, ${fixture.otherOffset}, 'boom', 0, 1)`;
  await conn`SELECT * FROM register_view(${fixture.retryView}, '2000-01-01'::timestamp)`;
  const [retried] = await conn<{ lease_id: string }[]>`
    SELECT * FROM lease_events(${fixture.retryView}, 1000, 1, 300) WHERE decider_id = ${fixture.other}`;
  await conn`SELECT fail_event(${fixture.retryView}, ${fixture.other}, ${retried?.lease_id ?? null}, ${fixture.otherOffset}, 'boom', 0, 1)`;
  await conn`SELECT * FROM retry_parked_event(${fixture.retryView}, ${fixture.otherOffset})`;
});

// --- The catalogue -----------------------------------------------------------------------------------------------

interface Variant extends Refusal {
  label: string;
  value: Value;
  /** Another SQL type for the argument: no function takes it (42883). */
  cast?: string;
}
interface Parameter {
  name: string;
  type: string;
  /** What a null does: refused, or accepted (each accepted null has a test of its own below). */
  null: Refusal | 'accepted';
  variants?: Variant[];
}
interface Entry {
  fn: string;
  /** SELECT * FROM fn(...) or SELECT fn(...) */
  select: 'rows' | 'value';
  params: Parameter[];
  /** Valid arguments: the call succeeds (checked in a rolled-back transaction). */
  valid: () => Value[];
}

const otherType = (label = 'an integer'): Variant => ({
  label,
  value: '1',
  cast: 'integer',
  code: '42883',
});
const badUuid: Variant = { label: "'not-a-uuid'", value: 'not-a-uuid', code: '22P02' };
const text = (name: string, nullOutcome: Parameter['null']): Parameter => ({
  name,
  type: 'text',
  null: nullOutcome,
  variants: [otherType()],
});
/** An AES-256 key: 32 bytes, as bytea's hex text (subject_key, rotate_subject_key, 0020). */
const KEY = `\\x${'ab'.repeat(32)}`;
const keyVariants: Variant[] = [
  { label: '31 bytes', value: `\\x${'ab'.repeat(31)}`, code: '23514', constraint: 'subject_keys_key_check' },
  { label: 'bytes that are no hex', value: '\\xzz', code: '22023' },
];
/** No event of the stream at that offset (save_snapshot, 0018). */
const NO_EVENT: Refusal = { code: 'P0002', constraint: 'events_pkey' };
/** Metadata (append_event and append_events with metadata, 0016): a JSON object of known keys, within 8 KiB. */
const METADATA: Refusal = { code: '23514', constraint: 'events_metadata_check' };
const metadataVariants: Variant[] = [
  { label: 'malformed JSON', value: '{"correlation_id": ', code: '22P02' },
  { label: 'a JSON array', value: '["c-1"]', ...METADATA },
  { label: 'JSON null', value: 'null', ...METADATA },
  { label: 'an unknown key', value: '{"user": "ada"}', ...METADATA },
  { label: 'a correlation id that is a number', value: '{"correlation_id": 42}', ...METADATA },
  {
    label: 'a correlation id of 201 characters',
    value: `{"correlation_id": "${'c'.repeat(201)}"}`,
    ...METADATA,
  },
  { label: 'a causation id that is an object', value: '{"causation_id": {}}', ...METADATA },
  { label: 'a traceparent that is a number', value: '{"traceparent": 1}', ...METADATA },
  { label: 'headers that are a string', value: '{"headers": "user=ada"}', ...METADATA },
  {
    label: 'headers over 8 KiB',
    value: JSON.stringify({ headers: { note: 'x'.repeat(9000) } }),
    ...METADATA,
  },
];
/** A subscription (register_view, reset_view): NULL means everything, an empty array or a NULL in it is refused. */
const SUBSCRIPTION: Refusal = { code: '22023', constraint: 'views_subscription' };
const subscription = (name: string): Parameter => ({
  name,
  type: 'text[]',
  null: 'accepted',
  variants: [
    { label: 'an empty array', value: '{}', ...SUBSCRIPTION },
    { label: 'an array holding a NULL', value: '{created,NULL}', ...SUBSCRIPTION },
    { label: 'an array of NULL only', value: '{NULL}', ...SUBSCRIPTION },
    { label: 'a text that is no array', value: 'created', code: '22P02' },
    { label: 'an integer array', value: '{1}', cast: 'integer[]', code: '42883' },
  ],
});
const noSuchView = (code = 'P0002'): Variant => ({
  label: 'a view that does not exist',
  value: 'no-such-view',
  code,
});
const TOO_BIG_INT = { label: '2^31 (beyond int)', value: '2147483648', code: '22003' };
const TOO_BIG_BIGINT = { label: '2^63 (beyond bigint)', value: '9223372036854775808', code: '22003' };
/** A view, a stream and an offset in it (view_reached and wait_for_view, 0014_read_your_writes). */
const viewPositionParams: Parameter[] = [
  {
    name: 'v_view',
    type: 'text',
    null: NO_DATA,
    variants: [otherType(), noSuchView()],
  },
  {
    name: 'v_decider_id',
    type: 'text',
    null: INVALID,
    variants: [
      otherType(),
      {
        label: 'a stream with no event at that offset',
        value: 'no-such-stream',
        code: 'P0002',
        constraint: 'events_pkey',
      },
    ],
  },
  {
    name: 'v_offset',
    type: 'bigint',
    null: INVALID,
    variants: [
      { label: "'x'", value: 'x', code: '22P02' },
      { label: 'an offset with no event', value: '0', code: 'P0002', constraint: 'events_pkey' },
      TOO_BIG_BIGINT,
    ],
  },
];

function call(entry: Entry, casts: (string | undefined)[] = []): string {
  const args = entry.params
    .map((p, i) => {
      const type = casts[i] ?? p.type;
      return type === 'text' ? `$${i + 1}::text` : `$${i + 1}::text::${type}`;
    })
    .join(', ');
  return entry.select === 'rows'
    ? `SELECT * FROM ${entry.fn}(${args})`
    : `SELECT ${entry.fn}(${args}) AS value`;
}

const leaseParams: Parameter[] = [
  {
    name: 'v_view',
    type: 'text',
    null: NO_DATA,
    variants: [otherType(), { label: 'a view that does not exist', value: 'no-such-view', code: 'P0002' }],
  },
  {
    name: 'v_streams',
    type: 'int',
    null: INVALID,
    variants: [{ label: '-1', value: '-1', code: '22023' }, TOO_BIG_INT],
  },
  {
    name: 'v_events_per_stream',
    type: 'int',
    null: INVALID,
    variants: [
      { label: '0', value: '0', code: '22023' },
      { label: '-5', value: '-5', code: '22023' },
      TOO_BIG_INT,
    ],
  },
  {
    name: 'v_lock_seconds',
    type: 'int',
    null: INVALID,
    variants: [
      { label: '0', value: '0', code: '22023' },
      { label: "'x'", value: 'x', code: '22P02' },
      TOO_BIG_INT,
    ],
  },
];

/** append_event from its nine-argument form (0001) on: the ten-argument form (0016) adds the metadata. */
const appendEventFinalArgs = (): Value[] => [
  'renamed',
  randomUUID(),
  decider,
  fixture.stream,
  '{}',
  randomUUID(),
  fixture.ids[2] as string,
  '1',
  'false',
];
const appendEventFinalParams: Parameter[] = [
  text('v_event', NOT_NULL),
  { name: 'v_event_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
  text('v_decider', NOT_NULL),
  text('v_decider_id', NOT_NULL),
  {
    name: 'v_data',
    type: 'jsonb',
    null: NOT_NULL,
    variants: [{ label: 'malformed JSON', value: '[1, 2', code: '22P02' }],
  },
  { name: 'v_command_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
  {
    name: 'v_previous_id',
    type: 'uuid',
    null: { code: '23514', constraint: 'events_previous_id_required' },
    variants: [badUuid],
  },
  {
    name: 'v_event_version',
    type: 'bigint',
    null: NOT_NULL,
    variants: [{ label: "'x'", value: 'x', code: '22P02' }],
  },
  {
    name: 'v_final',
    type: 'boolean',
    null: 'accepted',
    variants: [{ label: "'maybe'", value: 'maybe', code: '22P02' }],
  },
];

/** append_events from its six-argument form (0013) on: the seven-argument form (0016) adds the metadata. */
const appendEventsOnceArgs = (oncePerCommand: 'true' | 'false'): Value[] => [
  decider,
  fixture.stream,
  fixture.ids[2] as string,
  randomUUID(),
  JSON.stringify([{ event: 'renamed', event_id: randomUUID(), data: {} }]),
  oncePerCommand,
];
const appendEventsOnceParams = (commandVariants: Variant[]): Parameter[] => [
  text('v_decider', NOT_NULL),
  text('v_decider_id', NOT_NULL),
  {
    name: 'v_previous_id',
    type: 'uuid',
    null: { code: '23514', constraint: 'events_expected_last_event' },
    variants: [badUuid],
  },
  { name: 'v_command_id', type: 'uuid', null: NOT_NULL, variants: commandVariants },
  {
    name: 'v_events',
    type: 'jsonb',
    null: INVALID,
    variants: [{ label: 'malformed JSON', value: '[{"event": ', code: '22P02' }],
  },
  {
    name: 'v_once_per_command',
    type: 'boolean',
    null: INVALID,
    variants: [{ label: "'maybe'", value: 'maybe', code: '22P02' }],
  },
];

const catalogue: Entry[] = [
  {
    fn: 'register_decider_event',
    select: 'rows',
    valid: () => [decider, `type-${randomUUID()}`, 'a description', '1'],
    params: [
      text('v_decider', NOT_NULL),
      text('v_event', NOT_NULL),
      text('v_description', 'accepted'),
      {
        name: 'v_event_version',
        type: 'bigint',
        null: NOT_NULL,
        variants: [
          { label: "'one'", value: 'one', code: '22P02' },
          { label: '1.5', value: '1.5', code: '22P02' },
          TOO_BIG_BIGINT,
        ],
      },
    ],
  },
  {
    fn: 'register_decider_event',
    select: 'rows',
    valid: () => [decider, `type-${randomUUID()}`],
    params: [text('v_decider', NOT_NULL), text('v_event', NOT_NULL)],
  },
  {
    fn: 'append_event',
    select: 'rows',
    valid: () => [
      'renamed',
      randomUUID(),
      decider,
      fixture.stream,
      '{"n": 4}',
      randomUUID(),
      fixture.ids[2] as string,
      '1',
    ],
    params: [
      {
        name: 'v_event',
        type: 'text',
        null: NOT_NULL,
        variants: [
          otherType(),
          {
            label: 'an unregistered type',
            value: 'never-registered',
            code: '23503',
            constraint: 'events_decider_event_fkey',
          },
        ],
      },
      {
        name: 'v_event_id',
        type: 'uuid',
        null: NOT_NULL,
        variants: [
          badUuid,
          { label: 'a UUID missing a digit', value: '21e19516-9bda-11ed-a8fc-0242ac12000', code: '22P02' },
        ],
      },
      text('v_decider', NOT_NULL),
      text('v_decider_id', NOT_NULL),
      {
        name: 'v_data',
        type: 'jsonb',
        null: NOT_NULL,
        variants: [
          { label: 'malformed JSON', value: '{"n": ', code: '22P02' },
          { label: 'NaN', value: 'NaN', code: '22P02' },
          { label: 'a \\u0000 escape', value: '{"s": "a\\u0000b"}', code: '22P05' },
          { label: 'a lone surrogate escape', value: '{"s": "\\ud800"}', code: '22P02' },
        ],
      },
      { name: 'v_command_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
      {
        name: 'v_previous_id',
        type: 'uuid',
        // Null is accepted for a stream's first event only: here the stream exists.
        null: { code: '23514', constraint: 'events_previous_id_required' },
        variants: [
          badUuid,
          {
            label: 'an id of no event',
            value: randomUUID(),
            code: '23514',
            constraint: 'events_previous_id_same_stream',
          },
        ],
      },
      {
        name: 'v_event_version',
        type: 'bigint',
        null: NOT_NULL,
        variants: [
          { label: "'v2'", value: 'v2', code: '22P02' },
          {
            label: 'an unregistered version',
            value: '7',
            code: '23503',
            constraint: 'events_decider_event_fkey',
          },
          TOO_BIG_BIGINT,
        ],
      },
    ],
  },
  {
    fn: 'append_event',
    select: 'rows',
    valid: appendEventFinalArgs,
    params: appendEventFinalParams,
  },
  {
    fn: 'append_events',
    select: 'rows',
    valid: () => [
      decider,
      fixture.stream,
      fixture.ids[2] as string,
      randomUUID(),
      JSON.stringify([{ event: 'renamed', event_id: randomUUID(), data: {} }]),
    ],
    params: [
      text('v_decider', NOT_NULL),
      text('v_decider_id', NOT_NULL),
      {
        name: 'v_previous_id',
        type: 'uuid',
        // Null means "a new stream": here the stream exists.
        null: { code: '23514', constraint: 'events_expected_last_event' },
        variants: [
          badUuid,
          {
            label: 'an id of no event',
            value: randomUUID(),
            code: '23514',
            constraint: 'events_expected_last_event',
          },
        ],
      },
      { name: 'v_command_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
      {
        name: 'v_events',
        type: 'jsonb',
        null: INVALID,
        variants: [{ label: 'malformed JSON', value: '[{"event": ', code: '22P02' }],
      },
    ],
  },
  {
    // append_events once per command (0013_commands_apply_once): the same, refusing a command the stream holds.
    fn: 'append_events',
    select: 'rows',
    valid: () => appendEventsOnceArgs('true'),
    params: appendEventsOnceParams([
      badUuid,
      {
        label: 'a command the stream already holds',
        value: fixture.commandId,
        code: '23505',
        constraint: 'events_command_applied',
      },
    ]),
  },
  {
    // append_event with metadata (0016_event_metadata_in_the_sql_api): the nine-argument form's checks, and the
    // metadata's own (events_metadata_check).
    fn: 'append_event',
    select: 'rows',
    valid: () => [...appendEventFinalArgs(), '{"correlation_id": "c-1"}'],
    params: [
      ...appendEventFinalParams,
      { name: 'v_metadata', type: 'jsonb', null: 'accepted', variants: metadataVariants },
    ],
  },
  {
    // append_events with metadata (0016_event_metadata_in_the_sql_api): the one body of append_events.
    fn: 'append_events',
    select: 'rows',
    valid: () => [...appendEventsOnceArgs('false'), '{"correlation_id": "c-1", "headers": {"user": "ada"}}'],
    params: [
      ...appendEventsOnceParams([badUuid]),
      { name: 'v_metadata', type: 'jsonb', null: 'accepted', variants: metadataVariants },
    ],
  },
  {
    fn: 'get_correlated_events',
    select: 'rows',
    valid: () => ['c-1'],
    params: [text('v_correlation_id', 'accepted')],
  },
  {
    // Snapshots (0018_snapshots_in_the_sql_api): an event of the stream, a version's name, a JSON state.
    fn: 'save_snapshot',
    select: 'rows',
    valid: () => [decider, fixture.stream, 'v1', fixture.offsets[2] as string, '{"n": 1}'],
    params: [
      text('v_decider', NO_EVENT),
      text('v_decider_id', NO_EVENT),
      {
        name: 'v_version',
        type: 'text',
        null: INVALID,
        variants: [otherType(), { label: "''", value: '', ...INVALID }],
      },
      {
        name: 'v_offset',
        type: 'bigint',
        null: NO_EVENT,
        variants: [
          { label: "'x'", value: 'x', code: '22P02' },
          { label: "another stream's event", value: 'OTHER', ...NO_EVENT },
          TOO_BIG_BIGINT,
        ],
      },
      {
        name: 'v_state',
        type: 'jsonb',
        null: NOT_NULL,
        variants: [{ label: 'malformed JSON', value: '{"n": ', code: '22P02' }],
      },
    ],
  },
  {
    fn: 'get_snapshot',
    select: 'rows',
    valid: () => [decider, fixture.stream, 'v1'],
    params: [text('v_decider', 'accepted'), text('v_decider_id', 'accepted'), text('v_version', 'accepted')],
  },
  {
    fn: 'delete_snapshots',
    select: 'value',
    valid: () => [decider, 'v1'],
    params: [text('v_decider', INVALID), text('v_version', 'accepted')],
  },
  {
    // Personal data (0020_forgetting_subjects): a subject's key, drawn by the caller.
    fn: 'subject_key',
    select: 'rows',
    valid: () => ['subject-1', randomUUID(), KEY],
    params: [
      {
        name: 'v_subject',
        type: 'text',
        null: INVALID,
        variants: [otherType(), { label: "''", value: '', ...INVALID }],
      },
      { name: 'v_key_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
      { name: 'v_candidate', type: 'bytea', null: NOT_NULL, variants: keyVariants },
    ],
  },
  {
    fn: 'rotate_subject_key',
    select: 'value',
    valid: () => ['subject-1', randomUUID(), KEY],
    params: [
      {
        name: 'v_subject',
        type: 'text',
        null: INVALID,
        variants: [otherType(), { label: "''", value: '', ...INVALID }],
      },
      { name: 'v_key_id', type: 'uuid', null: NOT_NULL, variants: [badUuid] },
      { name: 'v_key', type: 'bytea', null: NOT_NULL, variants: keyVariants },
    ],
  },
  {
    fn: 'subject_keys',
    select: 'rows',
    valid: () => [`{${randomUUID()}}`],
    params: [
      {
        name: 'v_key_ids',
        type: 'uuid[]',
        null: 'accepted',
        variants: [{ label: 'an array of no uuid', value: '{x}', code: '22P02' }],
      },
    ],
  },
  {
    fn: 'forget_subject',
    select: 'value',
    valid: () => ['subject-1'],
    params: [
      {
        name: 'v_subject',
        type: 'text',
        null: INVALID,
        variants: [otherType(), { label: "''", value: '', ...INVALID }],
      },
    ],
  },
  {
    // Archiving and retention (0022_archiving_and_retention): the owner's operations.
    fn: 'archive_stream',
    select: 'rows',
    valid: () => [decider, fixture.archived],
    params: [
      {
        name: 'v_decider',
        type: 'text',
        null: INVALID,
        variants: [otherType(), { label: "''", value: '', ...INVALID }],
      },
      {
        name: 'v_decider_id',
        type: 'text',
        null: INVALID,
        variants: [
          otherType(),
          { label: "''", value: '', ...INVALID },
          { label: 'a stream that does not exist', value: 'no-such-stream', ...NO_DATA },
          {
            label: 'an open stream',
            value: 'STREAM',
            code: '55000',
            constraint: 'archived_streams_closed',
          },
        ],
      },
    ],
  },
  {
    fn: 'archive_closed_streams',
    select: 'value',
    valid: () => ['2000-01-01', '10'],
    params: [
      {
        name: 'v_closed_before',
        type: 'timestamptz',
        null: INVALID,
        variants: [{ label: "'not-a-time'", value: 'not-a-time', code: '22007' }],
      },
      {
        name: 'v_max_streams',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', ...INVALID },
          { label: "'many'", value: 'many', code: '22P02' },
        ],
      },
    ],
  },
  {
    fn: 'remove_archived_streams',
    select: 'value',
    valid: () => ['1 day', '10'],
    params: [
      {
        name: 'v_older_than',
        type: 'interval',
        null: INVALID,
        variants: [
          { label: "'-1 day'", value: '-1 day', ...INVALID },
          { label: "'forever'", value: 'forever', code: '22007' },
        ],
      },
      {
        name: 'v_max_streams',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', ...INVALID },
          { label: "'many'", value: 'many', code: '22P02' },
        ],
      },
    ],
  },
  {
    fn: 'get_archived_stream',
    select: 'rows',
    valid: () => [fixture.archived, decider],
    params: [text('v_decider_id', 'accepted'), text('v_decider', 'accepted')],
  },
  {
    fn: 'missing_history',
    select: 'rows',
    valid: () => [fixture.view],
    params: [
      {
        name: 'v_view',
        type: 'text',
        null: NO_DATA,
        variants: [otherType(), { label: 'a view that does not exist', value: 'no-such-view', ...NO_DATA }],
      },
    ],
  },
  {
    fn: 'get_events',
    select: 'rows',
    valid: () => [fixture.stream],
    params: [text('v_decider_id', 'accepted')],
  },
  {
    fn: 'get_events',
    select: 'rows',
    valid: () => [fixture.stream, decider],
    params: [text('v_decider_id', 'accepted'), text('v_decider', 'accepted')],
  },
  {
    fn: 'get_last_event',
    select: 'rows',
    valid: () => [fixture.stream, decider],
    params: [text('v_decider_id', 'accepted'), text('v_decider', 'accepted')],
  },
  {
    // get_events, one page (0008_sql_owns_state_changes).
    fn: 'get_events',
    select: 'rows',
    valid: () => [fixture.stream, decider, '0', '2'],
    params: [
      text('v_decider_id', 'accepted'),
      text('v_decider', 'accepted'),
      {
        name: 'v_after_offset',
        type: 'bigint',
        null: INVALID,
        variants: [{ label: "'x'", value: 'x', code: '22P02' }, TOO_BIG_BIGINT],
      },
      {
        name: 'v_limit',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', code: '22023' },
          { label: '-1', value: '-1', code: '22023' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  {
    fn: 'get_event',
    select: 'rows',
    valid: () => [fixture.ids[0] as string],
    params: [{ name: 'v_event_id', type: 'uuid', null: 'accepted', variants: [badUuid] }],
  },
  {
    fn: 'register_view',
    select: 'rows',
    valid: () => [`view-${randomUUID()}`, '2000-01-01', '300', '1', 'https://example.com/hook'],
    params: [
      text('v_view', NOT_NULL),
      {
        name: 'v_start_at',
        type: 'timestamp',
        null: NOT_NULL,
        variants: [{ label: "'yesterday at noon'", value: 'yesterday at noon', code: '22007' }],
      },
      {
        name: 'v_lock_timeout_s',
        type: 'bigint',
        null: NOT_NULL,
        variants: [
          { label: '0', value: '0', code: '23514', constraint: 'views_lock_timeout_s_check' },
          { label: '-1', value: '-1', code: '23514', constraint: 'views_lock_timeout_s_check' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_BIGINT,
        ],
      },
      {
        name: 'v_pooling_delay_s',
        type: 'bigint',
        null: 'accepted',
        variants: [
          // Both checks fail (pooling_delay_ms is the same delay times 1000); PostgreSQL names this one.
          { label: '-1', value: '-1', code: '23514', constraint: 'views_pooling_delay_ms_check' },
          { label: '10^16 (overflows as milliseconds)', value: '10000000000000000', code: '22003' },
        ],
      },
      text('v_edge_function_url', 'accepted'),
    ],
  },
  {
    fn: 'register_view',
    select: 'rows',
    valid: () => [`view-${randomUUID()}`, '500', '2000-01-01'],
    params: [
      text('v_view', NOT_NULL),
      {
        name: 'v_pooling_delay',
        type: 'bigint',
        null: 'accepted',
        variants: [
          { label: '-1', value: '-1', code: '23514', constraint: 'views_pooling_delay_ms_check' },
          { label: '2^63 - 1 (overflows rounding up)', value: '9223372036854775807', code: '22003' },
        ],
      },
      {
        name: 'v_start_at',
        type: 'timestamp',
        null: NOT_NULL,
        variants: [{ label: "'not a time'", value: 'not a time', code: '22007' }],
      },
    ],
  },
  {
    fn: 'set_view_lock_timeout',
    select: 'rows',
    valid: () => [fixture.view, '60'],
    params: [
      {
        name: 'v_view',
        type: 'text',
        null: NO_DATA,
        variants: [
          otherType(),
          { label: 'a view that does not exist', value: 'no-such-view', code: 'P0002' },
        ],
      },
      {
        name: 'v_lock_timeout_s',
        type: 'bigint',
        null: NOT_NULL,
        variants: [
          { label: '0', value: '0', code: '23514', constraint: 'views_lock_timeout_s_check' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_BIGINT,
        ],
      },
    ],
  },
  {
    fn: 'stream_events',
    select: 'rows',
    valid: () => [fixture.view, '1', '30'],
    params: [
      text('v_view_name', 'accepted'),
      {
        name: 'v_limit',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '-1', value: '-1', code: '22023' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_INT,
        ],
      },
      {
        name: 'v_seconds',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', code: '22023' },
          { label: '-30', value: '-30', code: '22023' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  {
    fn: 'ack_event',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream, fixture.offsets[0] as string],
    params: [
      text('v_view', 'accepted'),
      text('v_decider_id', INVALID),
      {
        name: 'v_offset',
        type: 'bigint',
        null: INVALID,
        variants: [
          { label: "an offset of another stream's event", value: 'OTHER', code: '22023' },
          { label: 'an offset of no event', value: '999999999', code: '22023' },
          { label: '-1', value: '-1', code: '22023' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_BIGINT,
        ],
      },
    ],
  },
  {
    fn: 'nack_event',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream],
    params: [text('v_view', 'accepted'), text('v_decider_id', 'accepted')],
  },
  {
    fn: 'schedule_nack_event',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream, '1000'],
    params: [
      text('v_view', 'accepted'),
      text('v_decider_id', 'accepted'),
      {
        name: 'v_milliseconds',
        type: 'bigint',
        null: INVALID,
        variants: [
          { label: '-1', value: '-1', code: '22023' },
          { label: '2^63 - 1 (no such timestamp)', value: '9223372036854775807', code: '22008' },
          TOO_BIG_BIGINT,
        ],
      },
    ],
  },
  {
    fn: 'lease_events',
    select: 'rows',
    valid: () => [fixture.view, '10', '10', '30'],
    params: leaseParams,
  },
  {
    // The overload that says how far to advance the view first (0012_catch_up_reads_the_log).
    fn: 'lease_events',
    select: 'rows',
    valid: () => [fixture.view, '10', '10', '30', '0'],
    params: [
      ...leaseParams,
      {
        name: 'v_advance_events',
        type: 'int',
        null: INVALID,
        variants: [{ label: '-1', value: '-1', code: '22023' }, TOO_BIG_INT],
      },
    ],
  },
  {
    // view_reached (0014_read_your_writes): how far a view has come with one stream.
    fn: 'view_reached',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream, fixture.offsets[0] as string],
    params: viewPositionParams,
  },
  {
    // wait_for_view (0014_read_your_writes): the same, waiting up to a timeout.
    fn: 'wait_for_view',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream, fixture.offsets[0] as string, '0'],
    params: [
      ...viewPositionParams,
      {
        name: 'v_timeout_ms',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '-1', value: '-1', code: '22023' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  {
    // claim_log_batch (0012_catch_up_reads_the_log): the next events straight from the log, in a transaction.
    fn: 'claim_log_batch',
    select: 'rows',
    valid: () => [fixture.view, '10'],
    params: [
      {
        name: 'v_view',
        type: 'text',
        null: NO_DATA,
        variants: [
          otherType(),
          { label: 'a view that does not exist', value: 'no-such-view', code: 'P0002' },
        ],
      },
      {
        name: 'v_max_events',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', code: '22023' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  {
    fn: 'ack_events',
    select: 'rows',
    valid: () => [fixture.view, fixture.stream, fixture.lease, fixture.offsets[0] as string, 'true'],
    params: [
      text('v_view', LEASE_LOST),
      text('v_decider_id', INVALID),
      {
        name: 'v_lease_id',
        type: 'uuid',
        null: LEASE_LOST,
        variants: [badUuid, { label: 'a token never handed out', value: randomUUID(), ...LEASE_LOST }],
      },
      {
        name: 'v_offset',
        type: 'bigint',
        null: INVALID,
        variants: [
          { label: "an offset of another stream's event", value: 'OTHER', code: '22023' },
          { label: 'an offset of no event', value: '999999999', code: '22023' },
          TOO_BIG_BIGINT,
        ],
      },
      {
        name: 'v_release',
        type: 'boolean',
        null: INVALID,
        variants: [{ label: "'maybe'", value: 'maybe', code: '22P02' }],
      },
    ],
  },
  {
    fn: 'renew_lease',
    select: 'value',
    valid: () => [fixture.view, fixture.stream, fixture.lease, '60'],
    params: [
      text('v_view', 'accepted'),
      text('v_decider_id', 'accepted'),
      { name: 'v_lease_id', type: 'uuid', null: 'accepted', variants: [badUuid] },
      {
        name: 'v_lock_seconds',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', code: '22023' },
          { label: '-1', value: '-1', code: '22023' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  {
    fn: 'release_lease',
    select: 'value',
    valid: () => [fixture.view, fixture.stream, fixture.lease, '0'],
    params: [
      text('v_view', 'accepted'),
      text('v_decider_id', 'accepted'),
      { name: 'v_lease_id', type: 'uuid', null: 'accepted', variants: [badUuid] },
      {
        name: 'v_delay_ms',
        type: 'bigint',
        null: INVALID,
        variants: [
          { label: '-1', value: '-1', code: '22023' },
          { label: '2^63 - 1 (no such timestamp)', value: '9223372036854775807', code: '22008' },
        ],
      },
    ],
  },
  {
    fn: 'fail_event',
    select: 'value',
    valid: () => [
      fixture.view,
      fixture.stream,
      fixture.lease,
      fixture.offsets[0] as string,
      'boom',
      '0',
      '3',
      'false',
    ],
    params: [
      text('v_view', LEASE_LOST),
      text('v_decider_id', INVALID),
      { name: 'v_lease_id', type: 'uuid', null: LEASE_LOST, variants: [badUuid] },
      {
        name: 'v_offset',
        type: 'bigint',
        null: INVALID,
        variants: [{ label: "an offset of another stream's event", value: 'OTHER', code: '22023' }],
      },
      text('v_error', 'accepted'),
      {
        name: 'v_retry_ms',
        type: 'bigint',
        null: INVALID,
        variants: [
          { label: '-1', value: '-1', code: '22023' },
          { label: '2^63 - 1 (no such timestamp)', value: '9223372036854775807', code: '22008' },
        ],
      },
      { name: 'v_max_attempts', type: 'int', null: INVALID, variants: [TOO_BIG_INT] },
      {
        name: 'v_stop_stream',
        type: 'boolean',
        null: INVALID,
        variants: [{ label: "'maybe'", value: 'maybe', code: '22P02' }],
      },
    ],
  },
  {
    fn: 'list_parked_events',
    select: 'rows',
    valid: () => [fixture.parkedView],
    params: [text('v_view', 'accepted')],
  },
  {
    fn: 'retry_parked_event',
    select: 'rows',
    valid: () => [fixture.parkedView, fixture.otherOffset],
    params: [
      text('v_view', NO_DATA),
      {
        name: 'v_offset',
        type: 'bigint',
        null: NO_DATA,
        variants: [
          { label: 'an offset not parked', value: '999999999', code: 'P0002' },
          { label: "'x'", value: 'x', code: '22P02' },
        ],
      },
    ],
  },
  {
    fn: 'discard_parked_event',
    select: 'rows',
    valid: () => [fixture.parkedView, fixture.otherOffset],
    params: [
      text('v_view', NO_DATA),
      {
        name: 'v_offset',
        type: 'bigint',
        null: NO_DATA,
        variants: [{ label: 'an offset not parked', value: '999999999', code: 'P0002' }],
      },
    ],
  },
  {
    fn: 'claim_parked_event',
    select: 'rows',
    valid: () => [fixture.retryView],
    params: [
      {
        name: 'v_view',
        type: 'text',
        null: NO_DATA,
        variants: [
          otherType(),
          { label: 'a view that does not exist', value: 'no-such-view', code: 'P0002' },
        ],
      },
    ],
  },
  {
    fn: 'ack_parked_event',
    select: 'rows',
    valid: () => [fixture.retryView, fixture.otherOffset],
    params: [
      text('v_view', NO_DATA),
      {
        name: 'v_offset',
        type: 'bigint',
        null: NO_DATA,
        variants: [
          { label: 'an offset not parked', value: '999999999', code: 'P0002' },
          { label: "'x'", value: 'x', code: '22P02' },
        ],
      },
    ],
  },
  {
    fn: 'fail_parked_event',
    select: 'rows',
    valid: () => [fixture.retryView, fixture.otherOffset, 'boom'],
    params: [
      text('v_view', NO_DATA),
      {
        name: 'v_offset',
        type: 'bigint',
        null: NO_DATA,
        variants: [{ label: 'an offset not parked', value: '999999999', code: 'P0002' }, TOO_BIG_BIGINT],
      },
      text('v_error', 'accepted'),
    ],
  },
  {
    fn: 'reset_view',
    select: 'rows',
    valid: () => [fixture.view, '2001-01-01'],
    params: [
      {
        name: 'v_view',
        type: 'text',
        null: NO_DATA,
        variants: [
          otherType(),
          { label: 'a view that does not exist', value: 'no-such-view', code: 'P0002' },
        ],
      },
      {
        name: 'v_start_at',
        type: 'timestamp',
        null: NOT_NULL,
        variants: [{ label: "'soon'", value: 'soon', code: '22007' }],
      },
    ],
  },
  {
    // ack_leases (0004_projection_workers): the acknowledgements travel as one JSON array.
    fn: 'ack_leases',
    select: 'value',
    valid: () => [
      fixture.view,
      JSON.stringify([
        { decider_id: fixture.stream, lease_id: fixture.lease, offset: Number(fixture.offsets[0]) },
      ]),
    ],
    params: [
      text('v_view', INVALID),
      {
        name: 'v_acks',
        type: 'jsonb',
        null: INVALID,
        variants: [
          { label: 'not JSON', value: 'not json', code: '22P02' },
          { label: 'an object, not an array', value: '{}', code: '22023' },
          {
            label: 'a lease_id that is not a UUID',
            value: '[{"decider_id":"s","lease_id":"x","offset":1}]',
            code: '22P02',
          },
          {
            label: 'a stream not leased',
            value: `[{"decider_id":"not-leased","lease_id":"${randomUUID()}","offset":1}]`,
            ...LEASE_LOST,
          },
        ],
      },
    ],
  },
  {
    // advance_view (0010_appends_write_only_the_event): creates the lock rows; lease_events and stream_events call
    // it first.
    fn: 'advance_view',
    select: 'value',
    valid: () => [fixture.view, '100'],
    params: [
      { name: 'v_view', type: 'text', null: NO_DATA, variants: [otherType(), noSuchView()] },
      {
        name: 'v_max_events',
        type: 'int',
        null: INVALID,
        variants: [
          { label: '0', value: '0', code: '22023' },
          { label: '-1', value: '-1', code: '22023' },
          { label: "'x'", value: 'x', code: '22P02' },
          TOO_BIG_INT,
        ],
      },
    ],
  },
  // The log's head and horizon (0010): no arguments, read only.
  { fn: 'log_head', select: 'rows', valid: () => [], params: [] },
  { fn: 'log_horizon', select: 'value', valid: () => [], params: [] },
  {
    // register_view with a subscription (0010): fstore-sql's three arguments, then deciders and event types.
    fn: 'register_view',
    select: 'rows',
    valid: () => [`view-${randomUUID()}`, '500', '2000-01-01', `{${decider}}`, '{created,renamed}'],
    params: [
      text('v_view', NOT_NULL),
      {
        name: 'v_pooling_delay',
        type: 'bigint',
        null: 'accepted',
        variants: [
          { label: '-1', value: '-1', code: '23514', constraint: 'views_pooling_delay_ms_check' },
          { label: "'x'", value: 'x', code: '22P02' },
        ],
      },
      {
        name: 'v_start_at',
        type: 'timestamp',
        null: NOT_NULL,
        variants: [{ label: "'not a time'", value: 'not a time', code: '22007' }],
      },
      subscription('v_deciders'),
      subscription('v_event_types'),
    ],
  },
  {
    // reset_view with a subscription (0010): a rebuild from start_at with what the view now subscribes to.
    fn: 'reset_view',
    select: 'rows',
    valid: () => [fixture.view, '2001-01-01', `{${decider}}`, '{created}'],
    params: [
      { name: 'v_view', type: 'text', null: NO_DATA, variants: [otherType(), noSuchView()] },
      {
        name: 'v_start_at',
        type: 'timestamp',
        null: NOT_NULL,
        variants: [{ label: "'soon'", value: 'soon', code: '22007' }],
      },
      subscription('v_deciders'),
      subscription('v_event_types'),
    ],
  },
  {
    fn: 'set_wakeups',
    select: 'value',
    valid: () => ['true'],
    params: [
      {
        name: 'v_enabled',
        type: 'boolean',
        null: INVALID,
        variants: [{ label: "'maybe'", value: 'maybe', code: '22P02' }],
      },
    ],
  },
];

const describeRefusal = (refusal: Refusal) =>
  refusal.constraint ? `${refusal.code} (${refusal.constraint})` : refusal.code;

const signature = (entry: Entry) => `${entry.fn}(${entry.params.map((p) => p.type).join(', ')})`;

/** Replaces the placeholders 'OTHER' (an offset of the other stream) and 'STREAM' (the open stream's id), known only
 * once the fixture exists. */
const resolve = (value: Value) =>
  value === 'OTHER' ? fixture.otherOffset : value === 'STREAM' ? fixture.stream : value;

/** The functions this database has: entries for functions that a later migration adds are skipped without it. */
const installed = new Set(
  (
    await conn<
      { name: string }[]
    >`SELECT DISTINCT proname AS name FROM pg_proc WHERE pronamespace = 'public'::regnamespace`
  ).map((row) => row.name),
);
const catalogued = catalogue.filter((entry) => installed.has(entry.fn));

describe('the catalogue covers the whole SQL API', () => {
  test('every function of the API, in every overload, has an entry', async () => {
    const rows = await conn<{ signature: string }[]>`
      SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS signature
      FROM pg_proc p
      WHERE p.pronamespace = 'public'::regnamespace AND p.prorettype <> 'trigger'::regtype
        AND p.proname NOT IN ('reset_view_positions', 'raise_lease_lost', 'raise_beyond_lease', 'subscription_list',
                              'read_into_lock_rows', 'view_holding_stream', 'move_streams_to_archive',
                              'warn_missing_history')`;
    const names = (s: string) =>
      s
        .replace(/\bv_\w+ /g, '')
        .replace(/timestamp without time zone/g, 'timestamp')
        .replace(/timestamp with time zone/g, 'timestamptz')
        .replace(/integer/g, 'int');
    const covered = new Set([...catalogue.map(signature), 'view_status()', 'view_lag()']);
    expect(rows.map((row) => names(row.signature)).filter((s) => !covered.has(s))).toEqual([]);
  });

  test('every parameter has a null case and at least one value of the wrong type or out of range', () => {
    const uncovered = catalogue.flatMap((entry) =>
      entry.params.filter((p) => (p.variants ?? []).length === 0).map((p) => `${signature(entry)} ${p.name}`),
    );
    expect(uncovered).toEqual([]);
  });
});

describe.each(catalogued.map((entry) => [signature(entry), entry] as const))('%s', (_, entry) => {
  test('with valid arguments the call succeeds (in a transaction rolled back)', async () => {
    await inRollback(call(entry), entry.valid());
    await usable();
  });

  const refusedNulls = entry.params.flatMap((param, index) =>
    param.null === 'accepted' ? [] : [[param.name, describeRefusal(param.null), index, param.null] as const],
  );
  if (refusedNulls.length > 0) {
    test.each(refusedNulls)(
      '%s => null: refused with %s, nothing written, the connection still usable',
      async (_, _code, index, refusal) => {
        const args = entry.valid();
        args[index] = null;
        await expectRefused(call(entry), args, refusal);
      },
    );
  }

  const variants = entry.params.flatMap((param, index) =>
    (param.variants ?? []).map(
      (variant) => [`${param.name} => ${variant.label}`, describeRefusal(variant), index, variant] as const,
    ),
  );
  if (variants.length > 0) {
    test.each(variants)('%s: refused with %s, nothing written', async (_, _code, index, variant) => {
      const args = entry.valid();
      args[index] = resolve(variant.value);
      const casts: (string | undefined)[] = [];
      casts[index] = variant.cast;
      await expectRefused(call(entry, casts), args, variant);
    });
  }
});

describe('nulls that are accepted, and what they do', () => {
  const rows = (statement: string, args: Value[]) => inRollback(statement, args);

  test('register_decider_event: a null description registers the type without one', async () => {
    const [row] = await rows(`SELECT * FROM register_decider_event($1, $2, NULL, 1)`, [
      decider,
      'undescribed',
    ]);
    expect(row).toMatchObject({ event: 'undescribed', description: null });
  });

  test("append_event: a null previous_id starts a new stream (and only a new one, as the catalogue's refusal shows)", async () => {
    const [row] = await rows(
      `SELECT * FROM append_event('created', gen_random_uuid(), $1, $2, '{}', gen_random_uuid(), NULL)`,
      [decider, `new-${randomUUID()}`],
    );
    expect(row).toMatchObject({ previous_id: null });
  });

  test('append_event and append_events with metadata: a null metadata writes none, as the older forms', async () => {
    const [one] = await rows(
      `SELECT * FROM append_event('created', gen_random_uuid(), $1, $2, '{}', gen_random_uuid(), NULL, 1, false, NULL)`,
      [decider, `new-${randomUUID()}`],
    );
    expect(one).toMatchObject({ metadata: null });
    const [batch] = await rows(
      `SELECT * FROM append_events($1, $2, NULL, gen_random_uuid(), $3::text::jsonb, false, NULL)`,
      [
        decider,
        `new-${randomUUID()}`,
        JSON.stringify([{ event: 'created', event_id: randomUUID(), data: {} }]),
      ],
    );
    expect(batch).toMatchObject({ metadata: null });
  });

  test('get_snapshot: a null decider, stream or version finds nothing', async () => {
    expect(await rows('SELECT * FROM get_snapshot(NULL, $1, NULL)', [fixture.stream])).toEqual([]);
  });

  test('delete_snapshots: a null version deletes the snapshots of every version of the decider', async () => {
    await rolledBack(async (tx) => {
      for (const version of ['a', 'b'])
        await tx`SELECT * FROM save_snapshot(${decider}, ${fixture.stream}, ${version}, ${fixture.offsets[0] ?? ''}::bigint, '1'::jsonb)`;
      const [row] = await tx<{ deleted: number }[]>`SELECT delete_snapshots(${decider}, NULL) AS deleted`;
      expect(row?.deleted).toBe(2);
    });
  });

  test('subject_keys: a null list of ids finds nothing', async () => {
    expect(await rows('SELECT * FROM subject_keys(NULL)', [])).toEqual([]);
  });

  test('get_correlated_events: a null correlation id finds nothing', async () => {
    expect(await rows('SELECT * FROM get_correlated_events(NULL)', [])).toEqual([]);
  });

  test('append_event (9 arguments): a null final is taken as false, as in append_events', async () => {
    const [row] = await rows(
      `SELECT * FROM append_event('created', gen_random_uuid(), $1, $2, '{}', gen_random_uuid(), NULL, 1, NULL)`,
      [decider, `new-${randomUUID()}`],
    );
    expect(row).toMatchObject({ final: false });
  });

  test('append_events: a null previous_id starts a new stream', async () => {
    const result = await rows(
      `SELECT * FROM append_events($1, $2, NULL, gen_random_uuid(), $3::text::jsonb)`,
      [
        decider,
        `new-${randomUUID()}`,
        JSON.stringify([{ event: 'created', event_id: randomUUID(), data: {} }]),
      ],
    );
    expect(result).toHaveLength(1);
  });

  test('get_events and get_last_event: a null stream or decider matches no event, so the answer is empty', async () => {
    expect(await conn`SELECT * FROM get_events(NULL)`).toEqual([]);
    expect(await conn`SELECT * FROM get_events(NULL, ${decider})`).toEqual([]);
    expect(await conn`SELECT * FROM get_events(${fixture.stream}, NULL)`).toEqual([]);
    expect(await conn`SELECT * FROM get_last_event(${fixture.stream}, NULL)`).toEqual([]);
    expect(await conn`SELECT * FROM get_last_event(NULL, ${decider})`).toEqual([]);
  });

  test('register_view: a null polling delay or edge function URL is stored as null (both are optional)', async () => {
    const [five] = await rows(`SELECT * FROM register_view($1, '2000-01-01', 300, NULL, NULL)`, [
      `view-${randomUUID()}`,
    ]);
    expect(five).toMatchObject({ pooling_delay_s: null, pooling_delay_ms: null, edge_function_url: null });
    const [three] = await rows(`SELECT * FROM register_view($1, NULL::bigint, '2000-01-01'::timestamp)`, [
      `view-${randomUUID()}`,
    ]);
    expect(three).toMatchObject({ pooling_delay_s: null, pooling_delay_ms: null });
  });

  test('register_view with a subscription: a null polling delay is stored as null, null deciders and event types subscribe to everything', async () => {
    const [row] = await rows(
      `SELECT * FROM register_view($1, NULL::bigint, '2000-01-01'::timestamp, NULL, NULL)`,
      [`view-${randomUUID()}`],
    );
    expect(row).toMatchObject({ pooling_delay_ms: null, subscribed_deciders: null, subscribed_events: null });
    const [some] = await rows(
      `SELECT * FROM register_view($1, NULL::bigint, '2000-01-01'::timestamp, ARRAY[$2], NULL)`,
      [`view-${randomUUID()}`, decider],
    );
    expect(some).toMatchObject({ subscribed_deciders: [decider], subscribed_events: null });
  });

  test('reset_view with a subscription: null deciders and event types make the view read everything again, from start_at', async () => {
    await rolledBack(async (tx) => {
      const view = `view-${randomUUID()}`;
      await tx`SELECT * FROM register_view(${view}, NULL::bigint, '2000-01-01'::timestamp, ARRAY['nobody'], NULL)`;
      await tx`SELECT advance_view(${view})`;
      expect(await tx`SELECT decider_id FROM locks WHERE view = ${view}`).toEqual([]);
      const [row] = await tx`SELECT * FROM reset_view(${view}, '2000-01-01'::timestamp, NULL, NULL)`;
      expect(row).toMatchObject({ subscribed_deciders: null, subscribed_events: null });
      await tx`SELECT advance_view(${view})`;
      const locks = await tx`SELECT decider_id FROM locks WHERE view = ${view} ORDER BY decider_id`;
      expect(locks.map((lock) => lock.decider_id)).toEqual(
        expect.arrayContaining([fixture.stream, fixture.other]),
      );
    });
  });

  test('stream_events, nack_event, schedule_nack_event, ack_event: a null view or stream has no lock row: nothing is leased or changed, no error', async () => {
    const before = await contents();
    // fstore-sql's functions keep their empty answers; lease_events refuses an unknown view (P0002, in the catalogue).
    expect(await conn`SELECT * FROM stream_events(NULL, 10, 30)`).toEqual([]);
    expect(await conn`SELECT * FROM nack_event(NULL, ${fixture.stream})`).toEqual([]);
    expect(await conn`SELECT * FROM nack_event(${fixture.view}, NULL)`).toEqual([]);
    expect(await conn`SELECT * FROM schedule_nack_event(NULL, ${fixture.stream}, 10)`).toEqual([]);
    expect(await conn`SELECT * FROM schedule_nack_event(${fixture.view}, NULL, 10)`).toEqual([]);
    // fstore-sql's ack_event answers an unknown (or null) view with no row rather than an error.
    expect(
      await conn`SELECT * FROM ack_event(NULL, ${fixture.stream}, ${fixture.offsets[0] as string})`,
    ).toEqual([]);
    expect(
      await conn`SELECT * FROM ack_event('no-such-view', ${fixture.stream}, ${fixture.offsets[0] as string})`,
    ).toEqual([]);
    expect(await contents()).toEqual(before);
  });

  test('renew_lease and release_lease: a null view, stream or token holds no lease: false, nothing changed', async () => {
    const before = await contents();
    const cases: [string | null, string | null, string | null][] = [
      [null, fixture.stream, fixture.lease],
      [fixture.view, null, fixture.lease],
      [fixture.view, fixture.stream, null],
    ];
    for (const [view, stream, lease] of cases) {
      expect(await conn`SELECT renew_lease(${view}, ${stream}, ${lease}::uuid, 60) AS held`).toEqual([
        { held: false },
      ]);
      expect(await conn`SELECT release_lease(${view}, ${stream}, ${lease}::uuid, 0) AS held`).toEqual([
        { held: false },
      ]);
    }
    expect(await contents()).toEqual(before);
  });

  test('fail_event: a null error is recorded as an empty one when the event is parked', async () => {
    await rolledBack(async (tx) => {
      const [row] = await tx`
        SELECT fail_event(${fixture.view}, ${fixture.stream}, ${fixture.lease}, ${fixture.offsets[0] as string}, NULL, 0, 1) AS outcome`;
      expect(row?.outcome).toBe('parked');
      const parked = await tx`SELECT error FROM parked_events WHERE view = ${fixture.view}`;
      expect(parked).toEqual([{ error: '' }]);
    });
  });

  test('get_events (one page) and get_event: a null stream, decider or id matches no event, so the answer is empty', async () => {
    expect(await conn`SELECT * FROM get_events(NULL, ${decider}, 0, 10)`).toEqual([]);
    expect(await conn`SELECT * FROM get_events(${fixture.stream}, NULL, 0, 10)`).toEqual([]);
    expect(await conn`SELECT * FROM get_event(NULL)`).toEqual([]);
  });

  test('fail_parked_event: a null error is recorded as an empty one', async () => {
    await rolledBack(async (tx) => {
      const [row] =
        await tx`SELECT error, attempts FROM fail_parked_event(${fixture.retryView}, ${fixture.otherOffset}, NULL)`;
      expect(row).toEqual({ error: '', attempts: 2 });
    });
  });

  test('list_parked_events: a null view lists the parked events of every view', async () => {
    const all = await conn`SELECT view FROM list_parked_events(NULL)`;
    expect(all.map((row) => row.view)).toContain(fixture.parkedView);
  });
});

describe('values taken as they are, though a client may not expect it', () => {
  const appendBatch = (events: unknown[]) =>
    inRollback(`SELECT * FROM append_events($1, $2, NULL, gen_random_uuid(), $3::text::jsonb)`, [
      decider,
      `new-${randomUUID()}`,
      JSON.stringify(events),
    ]);

  test('append_events: "final" and "event_version" are cast from their text, so "yes" is true and null is the default', async () => {
    const [row] = await appendBatch([
      { event: 'created', event_id: randomUUID(), data: {}, final: 'yes', event_version: null },
    ]);
    expect(row).toMatchObject({ final: true, event_version: '1' });
  });

  test('append_events: a number as the event type is taken as its text; unknown keys are ignored', async () => {
    await conn`SELECT * FROM register_decider_event(${decider}, '5')`;
    const [row] = await appendBatch([{ event: 5, event_id: randomUUID(), data: {}, color: 'blue' }]);
    expect(row).toMatchObject({ event: '5' });
  });

  test('jsonb keeps the last of repeated keys, and numbers beyond what JavaScript can hold', async () => {
    const [row] = await inRollback(
      `SELECT data::text AS data FROM append_event('created', gen_random_uuid(), $1, $2, $3::text::jsonb, gen_random_uuid(), NULL)`,
      [decider, `new-${randomUUID()}`, '{"a": 1, "a": 2, "big": 1e400}'],
    );
    expect(row?.data).toMatch(/^\{"a": 2, "big": 1000+\}$/);
  });

  test('register_decider_event: empty names and versions below 1 are registered (the typed store refuses them)', async () => {
    const result = await inRollback(`SELECT * FROM register_decider_event('', '', NULL, 0)`, []);
    const negative = await inRollback(`SELECT * FROM register_decider_event($1, 'e', NULL, -3)`, [decider]);
    expect(result).toEqual([{ decider: '', event: '', event_version: '0', description: null }]);
    expect(negative).toEqual([{ decider, event: 'e', event_version: '-3', description: null }]);
  });

  test('register_view: any lease length above zero is stored, up to 2^63 - 1 seconds (no lease can last that long)', async () => {
    const [row] = await inRollback(`SELECT * FROM register_view($1, '2000-01-01', 9223372036854775807)`, [
      `view-${randomUUID()}`,
    ]);
    expect(row?.lock_timeout_s).toBe('9223372036854775807');
  });

  test('advance_view: the largest int (2^31 - 1) as the number of events to pass is accepted', async () => {
    await rolledBack(async (tx) => {
      const view = `view-${randomUUID()}`;
      await tx`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
      const [row] = await tx<{ passed: number }[]>`SELECT advance_view(${view}, 2147483647) AS passed`;
      expect(row?.passed).toBeGreaterThanOrEqual(4);
      expect(
        await tx`SELECT 1 FROM locks WHERE view = ${view} AND decider_id = ${fixture.stream}`,
      ).toHaveLength(1);
    });
  });

  test('stream_events: the largest int limit and lease (2^31 - 1) are accepted', async () => {
    await rolledBack(async (tx) => {
      const view = `view-${randomUUID()}`;
      await tx`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
      const rows = await tx`
        SELECT decider_id FROM stream_events(${view}, 2147483647, 2147483647) x WHERE x.decider_id = ${fixture.stream}`;
      expect(rows).toHaveLength(1);
    });
  });

  test('the largest int lease (2^31 - 1 seconds: 68 years), stream count and batch are accepted', async () => {
    await rolledBack(async (tx) => {
      const view = `view-${randomUUID()}`;
      await tx`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp)`;
      const rows = await tx`
        SELECT decider_id, (SELECT locked_until FROM locks l WHERE l.view = ${view} AND l.decider_id = x.decider_id) AS until
        FROM lease_events(${view}, 2147483647, 2147483647, 2147483647) x WHERE x.decider_id = ${fixture.stream}`;
      expect(rows).toHaveLength(3);
    });
  });
});

describe('append_events: the events array', () => {
  const id = () => randomUUID();
  const cases: [string, unknown, { code: string; constraint?: string }][] = [
    ['not an array but an object', { event: 'created', event_id: id(), data: {} }, INVALID],
    ['an empty array', [], INVALID],
    ['a JSON string holding an array', '[]', INVALID],
    ['a number', 42, INVALID],
    ['an element without event_id', [{ event: 'created', data: {} }], NOT_NULL],
    [
      'an element whose event_id is no UUID',
      [{ event: 'created', event_id: 'abc', data: {} }],
      { code: '22P02' },
    ],
    ['an element without event', [{ event_id: id(), data: {} }], NOT_NULL],
    ['an element without data', [{ event: 'created', event_id: id() }], NOT_NULL],
    ['an element that is a string', ['created'], NOT_NULL],
    ['an element that is null', [null], NOT_NULL],
    [
      'an event_version that is text',
      [{ event: 'created', event_id: id(), data: {}, event_version: 'two' }],
      { code: '22P02' },
    ],
    [
      'an event_version that is fractional',
      [{ event: 'created', event_id: id(), data: {}, event_version: 1.5 }],
      { code: '22P02' },
    ],
    [
      'an event_version beyond bigint',
      [{ event: 'created', event_id: id(), data: {}, event_version: 1e19 }],
      { code: '22003' },
    ],
    [
      'a final that is no boolean',
      [{ event: 'created', event_id: id(), data: {}, final: 'maybe' }],
      { code: '22P02' },
    ],
    [
      'an unregistered type',
      [{ event: 'never-registered', event_id: id(), data: {} }],
      { code: '23503', constraint: 'events_decider_event_fkey' },
    ],
    [
      'an unregistered version',
      [{ event: 'created', event_id: id(), data: {}, event_version: 9 }],
      { code: '23503', constraint: 'events_decider_event_fkey' },
    ],
    [
      'the third of three events unregistered',
      [
        { event: 'created', event_id: id(), data: {} },
        { event: 'renamed', event_id: id(), data: {} },
        { event: 'nope', event_id: id(), data: {} },
      ],
      { code: '23503', constraint: 'events_decider_event_fkey' },
    ],
    [
      'the same event id twice',
      (() => {
        const same = id();
        return [
          { event: 'created', event_id: same, data: {} },
          { event: 'renamed', event_id: same, data: {} },
        ];
      })(),
      { code: '23505', constraint: 'events_event_id_key' },
    ],
  ];

  test.each(cases)('%s: refused, nothing written', async (_, events, refusal) => {
    await expectRefused(
      `SELECT * FROM append_events($1, $2, NULL, gen_random_uuid(), $3::text::jsonb)`,
      [decider, `new-${randomUUID()}`, JSON.stringify(events)],
      refusal,
    );
  });

  test('a first event id already stored, with other content: 23505 events_event_id_key, nothing written', async () => {
    await expectRefused(
      `SELECT * FROM append_events($1, $2, NULL, gen_random_uuid(), $3::text::jsonb)`,
      [
        decider,
        `new-${randomUUID()}`,
        JSON.stringify([{ event: 'created', event_id: fixture.otherId, data: {} }]),
      ],
      { code: '23505', constraint: 'events_event_id_key' },
    );
  });
});

describe('names: quotes, semicolons, injection attempts, unicode', () => {
  const names = [
    `'); DROP TABLE events; --`,
    `"; DELETE FROM deciders; --`,
    `a'b"c;d\\e`,
    `$$ $fn$ dollar quotes`,
    `%s %I %L format codes`,
    `Ünïcödé ✓ ñ ß`,
    `🦀🔥 emoji 👩‍👩‍👧`,
    `עברית right-to-left`,
    `zero\u200bwidth\u2028line separator`,
    `tab\tnewline\nreturn\r`,
    'x'.repeat(10_000),
  ];

  test.each(
    names.map((name) => [
      name.length > 60 ? `${name.slice(0, 20)}… (${name.length} characters)` : name,
      name,
    ]),
  )(
    '%j is stored and read back verbatim as a decider, type, description, stream, view, URL and subscription; nothing else happens',
    async (_, name) => {
      const before = await contents();
      await conn`SELECT * FROM register_decider_event(${name}, ${name}, ${name}, 1)`;
      const [event] = await conn`
        SELECT * FROM append_event(${name}, ${randomUUID()}, ${name}, ${name}, ${JSON.stringify({ name })}::text::jsonb,
                                   ${randomUUID()}, NULL)`;
      const view = `${name}-view`;
      await conn`SELECT * FROM register_view(${view}, '2000-01-01'::timestamp, 300, NULL, ${name})`;
      const subscribed = `${name}-subscribed`;
      await conn`
        SELECT * FROM register_view(${subscribed}, NULL::bigint, '2000-01-01'::timestamp, ARRAY[${name}::text],
                                    ARRAY[${name}::text])`;
      expect(event).toMatchObject({ event: name, decider: name, decider_id: name, data: { name } });
      expect(await conn`SELECT description FROM deciders WHERE decider = ${name}`).toEqual([
        { description: name },
      ]);
      expect(await conn`SELECT event, decider, data FROM get_events(${name}, ${name})`).toEqual([
        { event: name, decider: name, data: { name } },
      ]);
      expect(await conn`SELECT edge_function_url FROM views WHERE view = ${view}`).toEqual([
        { edge_function_url: name },
      ]);
      expect(
        await conn`SELECT subscribed_deciders, subscribed_events FROM views WHERE view = ${subscribed}`,
      ).toEqual([{ subscribed_deciders: [name], subscribed_events: [name] }]);
      // The lock rows appear when the views advance, not at the append.
      const lockOf = (v: string) =>
        conn`SELECT decider_id FROM locks WHERE view = ${v} AND decider_id = ${name}`;
      expect(await lockOf(view)).toEqual([]);
      await conn`SELECT advance_view(${view}), advance_view(${subscribed})`;
      expect(await lockOf(view)).toEqual([{ decider_id: name }]);
      expect(await lockOf(subscribed)).toEqual([{ decider_id: name }]);
      const after = await contents();
      expect([after?.events, after?.deciders, after?.views, after?.frontiers]).toEqual([
        (before?.events as number) + 1,
        (before?.deciders as number) + 1,
        (before?.views as number) + 2,
        (before?.frontiers as number) + 2,
      ]);
      const [tables] = await conn`
        SELECT to_regclass('public.events') IS NOT NULL AND to_regclass('public.deciders') IS NOT NULL
           AND to_regclass('public.views') IS NOT NULL AND to_regclass('public.locks') IS NOT NULL
           AND to_regclass('public.parked_events') IS NOT NULL
           AND to_regclass('public.view_frontiers') IS NOT NULL AS all_there`;
      expect(tables?.all_there).toBe(true);
    },
  );

  test('a name whose index entry exceeds 2704 bytes (incompressible, 3,200 characters) is refused with 54000, nothing written', async () => {
    const long = Array.from({ length: 100 }, () => randomUUID().replaceAll('-', '')).join('');
    await expectRefused(`SELECT * FROM register_decider_event($1::text, 'e')`, [long], {
      code: '54000',
      constraint: 'deciders_pkey',
    });
    await expectRefused(
      `SELECT * FROM append_event('created', gen_random_uuid(), $1, $2::text, '{}', gen_random_uuid(), NULL)`,
      [decider, long],
      { code: '54000' },
    );
    await expectRefused(`SELECT * FROM register_view($1::text)`, [long], {
      code: '54000',
      constraint: 'views_pkey',
    });
  });

  test('a NUL character in a name is refused with 22021 (text cannot hold it), nothing written', async () => {
    await expectRefused(`SELECT * FROM register_decider_event($1::text, 'e')`, ['nul\u0000byte'], {
      code: '22021',
    });
    await expectRefused(
      `SELECT * FROM append_event('created', gen_random_uuid(), $1, $2::text, '{}', gen_random_uuid(), NULL)`,
      [decider, 'nul\u0000byte'],
      { code: '22021' },
    );
  });
});

describe('payloads of 10 MB and more', () => {
  const payload = (megabytes: number) => {
    const chunk = 'x'.repeat(1000);
    const items = Array.from({ length: megabytes * 1050 }, (_, i) => ({ i, chunk }));
    return { items };
  };

  test.each([10, 25])(
    'a %i MB payload is stored and read back unchanged: PostgreSQL sets no cap below jsonb’s 255 MB',
    async (megabytes) => {
      const data = payload(megabytes);
      const json = JSON.stringify(data);
      expect(Buffer.byteLength(json)).toBeGreaterThan(megabytes * 1024 * 1024);
      const deciderId = `big-${randomUUID()}`;
      const started = Date.now();
      await conn`
      SELECT "offset" FROM append_event('created', ${randomUUID()}, ${decider}, ${deciderId}, ${json}::text::jsonb,
                                        ${randomUUID()}, NULL)`;
      const [row] = await conn<{ data: typeof data }[]>`SELECT data FROM get_events(${deciderId})`;
      expect(row?.data.items).toHaveLength(data.items.length);
      expect(row?.data).toEqual(data);
      expect(Date.now() - started).toBeLessThan(30_000);
      await usable();
    },
  );
});

describe('a failure inside a transaction', () => {
  test('aborts the transaction: its earlier writes roll back, and the connection is usable after', async () => {
    const before = await contents();
    const failure = await failureOf(() =>
      conn.begin(async (tx) => {
        await tx`SELECT * FROM register_decider_event(${decider}, 'inside-a-transaction')`;
        await tx`SELECT * FROM lease_events(${fixture.view}, -1, 1, 1)`;
      }),
    );
    expect(failure.code).toBe('22023');
    expect(await contents()).toEqual(before);
    await usable();
  });
});
