/**
 * The specification of fstore's SQL API, as one connection sees it. It runs on a real PostgreSQL through
 * postgres.js (sql-api.test.ts) and in process on PGlite (sql-api.pglite.test.ts). Races, which need two
 * connections, are specified in concurrency.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, test } from 'vitest';
import { failureOf, type Row, type SqlClient } from './sql-client.js';

const messages = {
  final:
    'last event for this decider stream is already final. the stream is closed, you can not append events to it.',
  firstOnly: 'previous_id can only be null for the first decider event',
  sameDecider: 'previous_id must be in the same decider',
};

interface EventRow extends Row {
  event: string;
  event_id: string;
  event_version: number;
  decider: string;
  decider_id: string;
  data: unknown;
  command_id: string;
  previous_id: string | null;
  final: boolean;
  created_at: Date;
  offset: number;
  transaction_id: string;
  metadata: unknown;
}

interface LockRow extends Row {
  view: string;
  decider_id: string;
  offset: number;
  last_offset: number;
  locked_until: Date;
  offset_final: boolean;
}

interface AppendInput {
  event?: string;
  eventId?: string;
  decider: string;
  deciderId: string;
  data?: unknown;
  previousId: string | null;
  version?: number;
  final?: boolean;
}

export function describeSqlApi(driver: string, connect: () => Promise<SqlClient>) {
  describe(`fstore SQL API (${driver})`, () => {
    let db: SqlClient;
    beforeAll(async () => {
      db = await connect();
    });

    /** A decider name of this test's own, with event types e1, e2 (version 1) and e1 version 2 registered. */
    async function newDecider(): Promise<string> {
      const decider = `decider-${randomUUID()}`;
      await db.query(`SELECT * FROM register_decider_event($1, 'e1')`, [decider]);
      await db.query(`SELECT * FROM register_decider_event($1, 'e2')`, [decider]);
      await db.query(`SELECT * FROM register_decider_event($1, 'e1', 'e1, second shape', 2)`, [decider]);
      return decider;
    }

    async function append(input: AppendInput): Promise<EventRow> {
      const parameters = [
        input.event ?? 'e1',
        input.eventId ?? randomUUID(),
        input.decider,
        input.deciderId,
        JSON.stringify(input.data ?? {}),
        randomUUID(),
        input.previousId,
      ];
      const rows =
        input.final === undefined
          ? await db.query<EventRow>(
              `SELECT * FROM append_event($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8)`,
              [...parameters, input.version ?? 1],
            )
          : await db.query<EventRow>(
              `SELECT * FROM append_event($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9)`,
              [...parameters, input.version ?? 1, input.final],
            );
      expect(rows).toHaveLength(1);
      return rows[0] as EventRow;
    }

    /** Appends `count` chained events to a new stream and returns them. */
    async function stream(decider: string, count: number, deciderId = `stream-${randomUUID()}`) {
      const appended: EventRow[] = [];
      for (let i = 0; i < count; i++) {
        appended.push(
          await append({ decider, deciderId, previousId: appended.at(-1)?.event_id ?? null, data: { i } }),
        );
      }
      return { deciderId, events: appended };
    }

    async function countEvents(deciderId: string): Promise<number> {
      const [row] = await db.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM events WHERE decider_id = $1`,
        [deciderId],
      );
      return row?.count ?? -1;
    }

    describe('register_decider_event', () => {
      test('the short form registers version 1 without a description', async () => {
        const decider = `decider-${randomUUID()}`;
        const rows = await db.query(`SELECT * FROM register_decider_event($1, 'created')`, [decider]);
        expect(rows).toEqual([{ decider, event: 'created', event_version: 1, description: null }]);
      });

      test('the long form registers a version with a description', async () => {
        const decider = `decider-${randomUUID()}`;
        const rows = await db.query(
          `SELECT * FROM register_decider_event($1, 'created', 'it was created', 3)`,
          [decider],
        );
        expect(rows).toEqual([
          { decider, event: 'created', event_version: 3, description: 'it was created' },
        ]);
      });

      test('registering again returns the registered row and changes nothing', async () => {
        const decider = `decider-${randomUUID()}`;
        await db.query(`SELECT * FROM register_decider_event($1, 'created', 'first words', 1)`, [decider]);
        const again = await db.query(
          `SELECT * FROM register_decider_event($1, 'created', 'other words', 1)`,
          [decider],
        );
        expect(again).toEqual([{ decider, event: 'created', event_version: 1, description: 'first words' }]);
        const all = await db.query(`SELECT * FROM deciders WHERE decider = $1`, [decider]);
        expect(all).toHaveLength(1);
      });

      test('a null name is refused', async () => {
        const failure = await failureOf(() =>
          db.query(`SELECT * FROM register_decider_event(NULL, 'created')`),
        );
        expect(failure.code).toBe('23502');
      });
    });

    describe('append_event', () => {
      test('stores the first event of a stream and returns it as stored', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const eventId = randomUUID();
        const stored = await append({ decider, deciderId, eventId, previousId: null, data: { name: 'Ada' } });
        expect(stored).toMatchObject({
          event: 'e1',
          event_id: eventId,
          event_version: 1,
          decider,
          decider_id: deciderId,
          data: { name: 'Ada' },
          previous_id: null,
          final: false,
        });
        expect(stored.offset).toBeGreaterThan(0);
        expect(stored.created_at).toBeInstanceOf(Date);
        expect(stored.transaction_id).toMatch(/^\d+$/);
      });

      test('chains each event to the one before it, in increasing offsets', async () => {
        const decider = await newDecider();
        const { events } = await stream(decider, 4);
        for (let i = 1; i < events.length; i++) {
          expect(events[i]?.previous_id).toBe(events[i - 1]?.event_id);
          expect(events[i]?.offset).toBeGreaterThan(events[i - 1]?.offset ?? Number.POSITIVE_INFINITY);
        }
      });

      test('accepts a registered version of an event type', async () => {
        const decider = await newDecider();
        const stored = await append({
          decider,
          deciderId: `stream-${randomUUID()}`,
          previousId: null,
          version: 2,
        });
        expect(stored.event_version).toBe(2);
      });

      test('refuses an event type the decider has not registered, through the foreign key', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const failure = await failureOf(() =>
          append({ decider, deciderId, previousId: null, event: 'unknown' }),
        );
        expect(failure).toMatchObject({ code: '23503', constraint: 'events_decider_event_fkey' });
        expect(await countEvents(deciderId)).toBe(0);
      });

      test('refuses a version of an event type that is not registered', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const failure = await failureOf(() =>
          append({ decider, deciderId, previousId: null, event: 'e2', version: 2 }),
        );
        expect(failure).toMatchObject({ code: '23503', constraint: 'events_decider_event_fkey' });
      });

      test('refuses a second "first" event (previous_id null) in a stream that has events', async () => {
        const decider = await newDecider();
        const { deciderId } = await stream(decider, 1);
        const failure = await failureOf(() => append({ decider, deciderId, previousId: null }));
        expect(failure).toMatchObject({
          code: '23514',
          constraint: 'events_previous_id_required',
          message: messages.firstOnly,
        });
        expect(await countEvents(deciderId)).toBe(1);
      });

      test('refuses a previous_id that belongs to another stream', async () => {
        const decider = await newDecider();
        const other = await stream(decider, 1);
        const { deciderId } = await stream(decider, 1);
        const failure = await failureOf(() =>
          append({ decider, deciderId, previousId: other.events[0]?.event_id ?? null }),
        );
        expect(failure).toMatchObject({
          code: '23514',
          constraint: 'events_previous_id_same_stream',
          message: messages.sameDecider,
        });
      });

      test('refuses a previous_id for a new stream, which has no event to point at', async () => {
        const decider = await newDecider();
        const other = await stream(decider, 1);
        const deciderId = `stream-${randomUUID()}`;
        const failure = await failureOf(() =>
          append({ decider, deciderId, previousId: other.events[0]?.event_id ?? null }),
        );
        expect(failure).toMatchObject({ code: '23514', message: messages.sameDecider });
        expect(await countEvents(deciderId)).toBe(0);
      });

      test('refuses a previous_id that is no longer the last event: the optimistic lock', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 2);
        const failure = await failureOf(() =>
          append({ decider, deciderId, previousId: events[0]?.event_id ?? null }),
        );
        expect(failure).toMatchObject({ code: '23505', constraint: 'events_previous_id_key' });
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('refuses an event id that is already stored', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 1);
        const failure = await failureOf(() =>
          append({
            decider,
            deciderId,
            previousId: events[0]?.event_id ?? null,
            eventId: events[0]?.event_id,
          }),
        );
        expect(failure).toMatchObject({ code: '23505', constraint: 'events_event_id_key' });
      });

      test('refuses data that is not JSON, and a malformed uuid', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const badJson = await failureOf(() =>
          db.query(`SELECT * FROM append_event('e1', $1, $2, $3, '{not json', $4, NULL)`, [
            randomUUID(),
            decider,
            deciderId,
            randomUUID(),
          ]),
        );
        expect(badJson.code).toBe('22P02');
        const badUuid = await failureOf(() =>
          db.query(`SELECT * FROM append_event('e1', 'not-a-uuid', $1, $2, '{}', $3, NULL)`, [
            decider,
            deciderId,
            randomUUID(),
          ]),
        );
        expect(badUuid.code).toBe('22P02');
        expect(await countEvents(deciderId)).toBe(0);
      });

      test('a final event closes the stream: nothing can be appended after it', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 1);
        const closing = await append({
          decider,
          deciderId,
          previousId: events[0]?.event_id ?? null,
          event: 'e2',
          final: true,
        });
        expect(closing.final).toBe(true);
        const failure = await failureOf(() => append({ decider, deciderId, previousId: closing.event_id }));
        expect(failure).toMatchObject({
          code: '23514',
          constraint: 'events_stream_not_final',
          message: messages.final,
        });
        // Closed is closed, whatever the writer believes the last event is.
        const stale = await failureOf(() => append({ decider, deciderId, previousId: null }));
        expect(stale.message).toBe(messages.final);
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('a plain INSERT passes the same checks as append_event', async () => {
        const decider = await newDecider();
        const { deciderId } = await stream(decider, 1);
        const failure = await failureOf(() =>
          db.query(
            `INSERT INTO events (event, event_id, decider, decider_id, data, command_id, previous_id)
             VALUES ('e1', $1, $2, $3, '{}', $4, NULL)`,
            [randomUUID(), decider, deciderId, randomUUID()],
          ),
        );
        expect(failure.message).toBe(messages.firstOnly);
      });
    });

    describe('append_events', () => {
      interface BatchEvent {
        event: string;
        event_id: string;
        data: unknown;
        event_version?: number;
        final?: boolean;
      }
      const batch = (count: number, overrides: Partial<BatchEvent>[] = []): BatchEvent[] =>
        Array.from({ length: count }, (_, i) => ({
          event: i % 2 === 0 ? 'e1' : 'e2',
          event_id: randomUUID(),
          data: { i },
          ...overrides[i],
        }));
      const appendBatch = (
        decider: string,
        deciderId: string,
        previousId: string | null,
        events: BatchEvent[],
        commandId = randomUUID(),
      ) =>
        db.query<EventRow>(`SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb)`, [
          decider,
          deciderId,
          previousId,
          commandId,
          JSON.stringify(events),
        ]);

      test('appends the events of one command in order, chained after the expected last event', async () => {
        const decider = await newDecider();
        const { deciderId, events: before } = await stream(decider, 1);
        const commandId = randomUUID();
        const input = batch(3, [{}, {}, { event_version: 1 }]);
        const stored = await appendBatch(decider, deciderId, before[0]?.event_id ?? null, input, commandId);
        expect(stored.map((e) => [e.event, e.event_id, e.data, e.command_id])).toEqual(
          input.map((e) => [e.event, e.event_id, e.data, commandId]),
        );
        expect(stored.map((e) => e.previous_id)).toEqual([
          before[0]?.event_id,
          input[0]?.event_id,
          input[1]?.event_id,
        ]);
        expect(await db.query(`SELECT * FROM get_events($1)`, [deciderId])).toEqual([...before, ...stored]);
      });

      test('null as the expected last event starts a new stream', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const stored = await appendBatch(decider, deciderId, null, batch(2));
        expect(stored[0]?.previous_id).toBeNull();
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('a retry of a stored batch returns the stored events and writes nothing', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const input = batch(3);
        const commandId = randomUUID();
        const stored = await appendBatch(decider, deciderId, null, input, commandId);
        const retried = await appendBatch(decider, deciderId, null, input, commandId);
        expect(retried).toEqual(stored);
        expect(await countEvents(deciderId)).toBe(3);
      });

      test('the same event id with other content is refused as a duplicate', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const input = batch(2);
        const commandId = randomUUID();
        await appendBatch(decider, deciderId, null, input, commandId);
        const changed = input.map((e, i) => (i === 1 ? { ...e, data: { other: true } } : e));
        const failure = await failureOf(() => appendBatch(decider, deciderId, null, changed, commandId));
        expect(failure).toMatchObject({ code: '23505', constraint: 'events_event_id_key' });
        expect(JSON.parse(failure.detail ?? '{}')).toEqual({ event_id: input[0]?.event_id });
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('a stale expectation is refused with what was expected and what was found', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 2);
        const stale = await failureOf(() =>
          appendBatch(decider, deciderId, events[0]?.event_id ?? null, batch(1)),
        );
        expect(stale).toMatchObject({ code: '23514', constraint: 'events_expected_last_event' });
        expect(JSON.parse(stale.detail ?? '{}')).toEqual({
          expected: events[0]?.event_id,
          found: events[1]?.event_id,
        });
        const notNew = await failureOf(() => appendBatch(decider, deciderId, null, batch(1)));
        expect(JSON.parse(notNew.detail ?? '{}')).toEqual({ expected: null, found: events[1]?.event_id });
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('is atomic: when the third of five events is invalid, none is stored', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const failure = await failureOf(() =>
          appendBatch(decider, deciderId, null, batch(5, [{}, {}, { event: 'unregistered' }])),
        );
        expect(failure).toMatchObject({ code: '23503', constraint: 'events_decider_event_fkey' });
        expect(await countEvents(deciderId)).toBe(0);
      });

      test('a final event in the batch closes the stream', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        const stored = await appendBatch(decider, deciderId, null, batch(2, [{}, { final: true }]));
        expect(stored.map((e) => e.final)).toEqual([false, true]);
        const failure = await failureOf(() =>
          appendBatch(decider, deciderId, stored[1]?.event_id ?? null, batch(1)),
        );
        expect(failure).toMatchObject({
          code: '23514',
          constraint: 'events_stream_not_final',
          message: messages.final,
        });
        // An event after a final one in the same batch fails the whole batch.
        const other = `stream-${randomUUID()}`;
        const inside = await failureOf(() => appendBatch(decider, other, null, batch(3, [{ final: true }])));
        expect(inside.message).toBe(messages.final);
        expect(await countEvents(other)).toBe(0);
      });

      test('refuses an empty batch, a batch that is not an array, and a malformed event id', async () => {
        const decider = await newDecider();
        const deciderId = `stream-${randomUUID()}`;
        for (const events of ['[]', '{}', 'null']) {
          const failure = await failureOf(() =>
            db.query(`SELECT * FROM append_events($1, $2, NULL, $3, $4::text::jsonb)`, [
              decider,
              deciderId,
              randomUUID(),
              events,
            ]),
          );
          expect(failure.code).toBe('22023');
        }
        const badId = await failureOf(() =>
          appendBatch(decider, deciderId, null, batch(1, [{ event_id: 'nope' }])),
        );
        expect(badId.code).toBe('22P02');
        expect(await countEvents(deciderId)).toBe(0);
      });
    });

    describe('append_events once per command', () => {
      const once = (deciderId: string, previousId: string | null, commandId: string, eventIds: string[]) =>
        db.query<EventRow>(`SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb, true)`, [
          onceDecider,
          deciderId,
          previousId,
          commandId,
          JSON.stringify(eventIds.map((id) => ({ event: 'e1', event_id: id, data: {} }))),
        ]);
      let onceDecider = '';
      beforeAll(async () => {
        onceDecider = await newDecider();
      });

      test('a command the stream already holds is refused, with its id, and nothing is written', async () => {
        const deciderId = `stream-${randomUUID()}`;
        const commandId = randomUUID();
        const first = await once(deciderId, null, commandId, [randomUUID(), randomUUID()]);
        // Decided again, with new event ids, after the stream's last event: still the same command.
        const again = await failureOf(() =>
          once(deciderId, first[1]?.event_id ?? null, commandId, [randomUUID()]),
        );
        expect(again).toMatchObject({ code: '23505', constraint: 'events_command_applied' });
        expect(JSON.parse(again.detail ?? '{}')).toEqual({ command_id: commandId });
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('a retry of the stored batch returns the stored events; the command may still act on other streams', async () => {
        const deciderId = `stream-${randomUUID()}`;
        const commandId = randomUUID();
        const ids = [randomUUID(), randomUUID()];
        const stored = await once(deciderId, null, commandId, ids);
        expect(await once(deciderId, null, commandId, ids)).toEqual(stored);
        const other = await once(`stream-${randomUUID()}`, null, commandId, [randomUUID()]);
        expect(other).toHaveLength(1);
        expect(await countEvents(deciderId)).toBe(2);
      });

      test('without it, a command id may come again, as fstore-sql appends one command event by event', async () => {
        const deciderId = `stream-${randomUUID()}`;
        const commandId = randomUUID();
        const [first] = await once(deciderId, null, commandId, [randomUUID()]);
        const second = await db.query<EventRow>(
          `SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb, false)`,
          [
            onceDecider,
            deciderId,
            first?.event_id,
            commandId,
            JSON.stringify([{ event: 'e2', event_id: randomUUID(), data: {} }]),
          ],
        );
        expect(second.map((e) => e.command_id)).toEqual([commandId]);
        expect(await countEvents(deciderId)).toBe(2);
      });
    });

    describe('event metadata (0015, 0016)', () => {
      let metaDecider = '';
      beforeAll(async () => {
        metaDecider = await newDecider();
      });
      const appendWith = (
        deciderId: string,
        previousId: string | null,
        metadata: unknown,
        eventIds = [randomUUID()],
        commandId = randomUUID(),
      ) =>
        db.query<EventRow>(
          `SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb, false, $6::text::jsonb)`,
          [
            metaDecider,
            deciderId,
            previousId,
            commandId,
            JSON.stringify(eventIds.map((id) => ({ event: 'e1', event_id: id, data: {} }))),
            metadata === null ? null : JSON.stringify(metadata),
          ],
        );

      test("append_events stores the command's metadata on each of its events; every read returns it", async () => {
        const deciderId = `stream-${randomUUID()}`;
        const metadata = {
          correlation_id: `order-${randomUUID()}`,
          causation_id: randomUUID(),
          traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
          headers: { user: 'ada', attempt: 2 },
        };
        const stored = await appendWith(deciderId, null, metadata, [randomUUID(), randomUUID()]);
        expect(stored.map((e) => e.metadata)).toEqual([metadata, metadata]);
        const loaded = await db.query<EventRow>(`SELECT * FROM get_events($1, $2)`, [deciderId, metaDecider]);
        expect(loaded.map((e) => e.metadata)).toEqual([metadata, metadata]);
        const [last] = await db.query<EventRow>(`SELECT * FROM get_last_event($1, $2)`, [
          deciderId,
          metaDecider,
        ]);
        expect(last?.metadata).toEqual(metadata);
        const [one] = await db.query<EventRow>(`SELECT * FROM get_event($1)`, [stored[0]?.event_id]);
        expect(one?.metadata).toEqual(metadata);
      });

      test('append_event with ten arguments stores it; the older forms store none', async () => {
        const deciderId = `stream-${randomUUID()}`;
        const [first] = await db.query<EventRow>(
          `SELECT * FROM append_event('e1', $1, $2, $3, '{}', $4, NULL, 1, false, '{"correlation_id": "c-1"}')`,
          [randomUUID(), metaDecider, deciderId, randomUUID()],
        );
        expect(first?.metadata).toEqual({ correlation_id: 'c-1' });
        const second = await append({ decider: metaDecider, deciderId, previousId: first?.event_id ?? null });
        expect(second.metadata).toBeNull();
        const [third] = await db.query<EventRow>(
          `SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb)`,
          [
            metaDecider,
            deciderId,
            second.event_id,
            randomUUID(),
            JSON.stringify([{ event: 'e1', event_id: randomUUID(), data: {} }]),
          ],
        );
        expect(third?.metadata).toBeNull();
      });

      test('a retry of a stored batch must carry the same metadata, but for its trace context; other metadata is other content', async () => {
        const deciderId = `stream-${randomUUID()}`;
        const ids = [randomUUID()];
        const commandId = randomUUID();
        const traced = (span: string) => `00-4bf92f3577b34da6a3ce929d0e0e4736-${span}-01`;
        const stored = await appendWith(
          deciderId,
          null,
          { correlation_id: 'a', traceparent: traced('00f067aa0ba902b7') },
          ids,
          commandId,
        );
        expect(
          await appendWith(
            deciderId,
            null,
            { correlation_id: 'a', traceparent: traced('1111111111111111') },
            ids,
            commandId,
          ),
        ).toEqual(stored);
        expect(await appendWith(deciderId, null, { correlation_id: 'a' }, ids, commandId)).toEqual(stored);
        const other = await failureOf(() =>
          appendWith(deciderId, null, { correlation_id: 'b' }, ids, commandId),
        );
        expect(other).toMatchObject({ code: '23505', constraint: 'events_event_id_key' });
        expect(await countEvents(deciderId)).toBe(1);
      });

      test('metadata that is not an object of the known keys is refused, and nothing is written', async () => {
        const deciderId = `stream-${randomUUID()}`;
        for (const bad of [['c-1'], { user: 'ada' }, { correlation_id: 7 }, { headers: 'x' }]) {
          const failure = await failureOf(() =>
            appendWith(deciderId, null, bad, [randomUUID(), randomUUID()]),
          );
          expect(failure).toMatchObject({ code: '23514', constraint: 'events_metadata_check' });
        }
        expect(await countEvents(deciderId)).toBe(0);
      });

      test('get_correlated_events returns the events of one correlation id across streams, in log order', async () => {
        const correlationId = `order-${randomUUID()}`;
        const a = await appendWith(`stream-${randomUUID()}`, null, { correlation_id: correlationId });
        await appendWith(`stream-${randomUUID()}`, null, { correlation_id: `other-${randomUUID()}` });
        await appendWith(`stream-${randomUUID()}`, null, null);
        const b = await appendWith(`stream-${randomUUID()}`, null, { correlation_id: correlationId }, [
          randomUUID(),
          randomUUID(),
        ]);
        const found = await db.query<EventRow>(`SELECT * FROM get_correlated_events($1)`, [correlationId]);
        expect(found.map((e) => e.event_id)).toEqual([...a, ...b].map((e) => e.event_id));
        expect(await db.query(`SELECT * FROM get_correlated_events($1)`, [`none-${randomUUID()}`])).toEqual(
          [],
        );
      });

      test('lease_events, stream_events and claim_parked_event deliver it with the event', async () => {
        const view = `view-${randomUUID()}`;
        await db.query(`SELECT * FROM register_view($1, now()::timestamp)`, [view]);
        const metadata = { correlation_id: `c-${randomUUID()}`, causation_id: 'x' };
        const [event] = await appendWith(`stream-${randomUUID()}`, null, metadata);
        const leased = await db.query<EventRow & { lease_id: string }>(
          `SELECT * FROM lease_events($1, 1000, 10, 300) WHERE event_id = $2`,
          [view, event?.event_id],
        );
        expect(leased.map((e) => e.metadata)).toEqual([metadata]);
        // Parked, its retry asked for: a worker claims it with its metadata.
        await db.query(`SELECT fail_event($1, $2, $3, $4, 'boom', 0, 1)`, [
          view,
          event?.decider_id,
          leased[0]?.lease_id,
          event?.offset,
        ]);
        await db.query(`SELECT * FROM append_events($1, $2, $3, $4, $5::text::jsonb)`, [
          metaDecider,
          event?.decider_id,
          event?.event_id,
          randomUUID(),
          JSON.stringify([{ event: 'e1', event_id: randomUUID(), data: {} }]),
        ]);
        await db.query(`SELECT * FROM retry_parked_event($1, $2)`, [view, event?.offset]);
        const claimed = await db.query<EventRow>(`SELECT * FROM claim_parked_event($1)`, [view]);
        expect(claimed.map((e) => e.metadata)).toEqual([metadata]);
        const other = `view-${randomUUID()}`;
        await db.query(`SELECT * FROM register_view($1, '2000-01-01'::timestamp)`, [other]);
        const streamed = await db.query<EventRow>(`SELECT * FROM stream_events($1, 100000, 300)`, [other]);
        expect(streamed.find((e) => e.event_id === event?.event_id)?.metadata).toEqual(metadata);
      });
    });

    describe('snapshots (0017, 0018)', () => {
      test('save_snapshot keeps the furthest state per version; get_snapshot returns it; delete_snapshots drops them', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 3);
        const save = (version: string, at: number, state: unknown) =>
          db.query<{ offset: number; event_id: string; state: unknown }>(
            `SELECT "offset", event_id, state FROM save_snapshot($1, $2, $3, $4, $5::text::jsonb)`,
            [decider, deciderId, version, events[at]?.offset, JSON.stringify(state)],
          );
        expect(await save('v1', 1, { n: 2 })).toMatchObject([
          { event_id: events[1]?.event_id, state: { n: 2 } },
        ]);
        // A racing writer that folded less does not take it back.
        expect(await save('v1', 0, { n: 1 })).toMatchObject([
          { event_id: events[1]?.event_id, state: { n: 2 } },
        ]);
        expect(await save('v1', 2, { n: 3 })).toMatchObject([
          { event_id: events[2]?.event_id, state: { n: 3 } },
        ]);
        await save('v2', 0, 'another shape');
        const get = (version: string) =>
          db.query<{ state: unknown }>(`SELECT state FROM get_snapshot($1, $2, $3)`, [
            decider,
            deciderId,
            version,
          ]);
        expect(await get('v1')).toEqual([{ state: { n: 3 } }]);
        expect(await get('v2')).toEqual([{ state: 'another shape' }]);
        expect(await get('v3')).toEqual([]);
        const [deleted] = await db.query<{ n: number }>(`SELECT delete_snapshots($1, 'v1') AS n`, [decider]);
        expect(Number(deleted?.n)).toBe(1);
        expect(await get('v1')).toEqual([]);
        expect(await get('v2')).toHaveLength(1);
      });

      test("save_snapshot refuses an offset that is not the stream's event, and writes nothing", async () => {
        const decider = await newDecider();
        const { deciderId } = await stream(decider, 1);
        const other = await stream(decider, 1);
        const failure = await failureOf(() =>
          db.query(`SELECT * FROM save_snapshot($1, $2, 'v1', $3, '{}')`, [
            decider,
            deciderId,
            other.events[0]?.offset,
          ]),
        );
        expect(failure).toMatchObject({ code: 'P0002', constraint: 'events_pkey' });
        expect(await db.query(`SELECT * FROM get_snapshot($1, $2, 'v1')`, [decider, deciderId])).toEqual([]);
      });
    });

    describe('subject keys and forgetting a subject (0019, 0020)', () => {
      const key = (byte: string) => `\\x${byte.repeat(32)}`;
      test('subject_key gives the newest key, rotate_subject_key a new one; forget_subject deletes them, with an audit row', async () => {
        const subject = `subject-${randomUUID()}`;
        const [first] = await db.query<{ key_id: string }>(
          `SELECT key_id FROM subject_key($1, $2, $3::text::bytea)`,
          [subject, randomUUID(), key('aa')],
        );
        // Asked again: the same key, whatever the candidate.
        const [again] = await db.query<{ key_id: string }>(
          `SELECT key_id FROM subject_key($1, $2, $3::text::bytea)`,
          [subject, randomUUID(), key('bb')],
        );
        expect(again?.key_id).toBe(first?.key_id);
        const rotated = randomUUID();
        await db.query(`SELECT rotate_subject_key($1, $2, $3::text::bytea)`, [subject, rotated, key('cc')]);
        const [newest] = await db.query<{ key_id: string }>(
          `SELECT key_id FROM subject_key($1, $2, $3::text::bytea)`,
          [subject, randomUUID(), key('dd')],
        );
        expect(newest?.key_id).toBe(rotated);
        const ids = `{${first?.key_id},${rotated},${randomUUID()}}`;
        const read = async () =>
          (
            await db.query<{ key_id: string; forgotten: boolean; key: unknown }>(
              `SELECT key_id, forgotten, key IS NULL AS no_key FROM subject_keys($1::text::uuid[]) ORDER BY key_id`,
              [ids],
            )
          ).map((row) => [row.key_id, row.forgotten, (row as unknown as { no_key: boolean }).no_key]);
        // The unknown third id is not returned.
        expect(await read()).toEqual(
          [
            [first?.key_id, false, false],
            [rotated, false, false],
          ].sort(),
        );
        const [forgot] = await db.query<{ n: number }>(`SELECT forget_subject($1) AS n`, [subject]);
        expect(Number(forgot?.n)).toBe(2);
        expect(await read()).toEqual(
          [
            [first?.key_id, true, true],
            [rotated, true, true],
          ].sort(),
        );
        const audit = await db.query<{ keys: number }>(
          `SELECT cardinality(key_ids) AS keys FROM subject_erasures WHERE subject = $1`,
          [subject],
        );
        expect(audit.map((row) => Number(row.keys))).toEqual([2]);
      });

      test('forget_subject drops every snapshot: a cache that may hold decrypted personal data', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 1);
        await db.query(`SELECT * FROM save_snapshot($1, $2, 'v1', $3, '{}')`, [
          decider,
          deciderId,
          events[0]?.offset,
        ]);
        await db.query(`SELECT forget_subject($1)`, [`subject-${randomUUID()}`]);
        expect(await db.query(`SELECT * FROM get_snapshot($1, $2, 'v1')`, [decider, deciderId])).toEqual([]);
      });
    });

    describe('immutability', () => {
      test('UPDATE and DELETE on events change nothing', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 2);
        await db.query(`UPDATE events SET data = '{"tampered": true}' WHERE decider_id = $1`, [deciderId]);
        await db.query(`DELETE FROM events WHERE decider_id = $1`, [deciderId]);
        const after = await db.query<EventRow>(`SELECT * FROM get_events($1)`, [deciderId]);
        expect(after).toEqual(events);
      });

      test('UPDATE and DELETE on deciders change nothing', async () => {
        const decider = await newDecider();
        await db.query(`UPDATE deciders SET description = 'tampered' WHERE decider = $1`, [decider]);
        await db.query(`DELETE FROM deciders WHERE decider = $1`, [decider]);
        const rows = await db.query(
          `SELECT * FROM deciders WHERE decider = $1 ORDER BY event, event_version`,
          [decider],
        );
        expect(rows.map((r) => [r.event, r.event_version, r.description])).toEqual([
          ['e1', 1, null],
          ['e1', 2, 'e1, second shape'],
          ['e2', 1, null],
        ]);
      });

      test('TRUNCATE of events or deciders fails', async () => {
        const decider = await newDecider();
        const { deciderId } = await stream(decider, 1);
        for (const table of ['events', 'deciders']) {
          const failure = await failureOf(() => db.query(`TRUNCATE ${table} CASCADE`));
          expect(failure).toMatchObject({
            code: '55000',
            message: `${table} is append-only: TRUNCATE is not allowed`,
          });
        }
        expect(await countEvents(deciderId)).toBe(1);
      });
    });

    describe('get_events and get_last_event', () => {
      test('get_events(decider_id) returns the stream in offset order', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 3);
        expect(await db.query(`SELECT * FROM get_events($1)`, [deciderId])).toEqual(events);
      });

      test('the decider argument filters by decider type, in both functions', async () => {
        const a = await newDecider();
        const b = await newDecider();
        const deciderId = `shared-${randomUUID()}`;
        const a1 = await append({ decider: a, deciderId, previousId: null });
        const a2 = await append({ decider: a, deciderId, previousId: a1.event_id });
        const b1 = await append({ decider: b, deciderId, previousId: null });
        expect(await db.query(`SELECT * FROM get_events($1, $2)`, [deciderId, a])).toEqual([a1, a2]);
        expect(await db.query(`SELECT * FROM get_events($1, $2)`, [deciderId, b])).toEqual([b1]);
        expect(await db.query(`SELECT * FROM get_events($1)`, [deciderId])).toEqual([a1, a2, b1]);
        // b1 is the newest event of that id, but not of decider a.
        expect(await db.query(`SELECT * FROM get_last_event($1, $2)`, [deciderId, a])).toEqual([a2]);
        expect(await db.query(`SELECT * FROM get_last_event($1, $2)`, [deciderId, b])).toEqual([b1]);
      });

      test('an unknown stream has no events and no last event', async () => {
        expect(await db.query(`SELECT * FROM get_events('nobody')`)).toEqual([]);
        expect(await db.query(`SELECT * FROM get_last_event('nobody', 'nothing')`)).toEqual([]);
      });
    });

    describe('register_view', () => {
      test("the README's form keeps the polling delay in milliseconds, and in whole seconds rounded up", async () => {
        const view = `view-${randomUUID()}`;
        const [row] = await db.query(`SELECT * FROM register_view($1, 500, '2023-01-28 12:17:17.078384')`, [
          view,
        ]);
        expect(row).toMatchObject({
          view,
          pooling_delay_ms: 500,
          pooling_delay_s: 1,
          lock_timeout_s: 300,
          edge_function_url: null,
        });
        expect(((row as Row).start_at as Date).toISOString()).toMatch(/^2023-01-28T/);
      });

      test('the later form takes seconds, a lock timeout and an edge function url, with defaults', async () => {
        const view = `view-${randomUUID()}`;
        const [defaults] = await db.query(`SELECT * FROM register_view($1)`, [view]);
        expect(defaults).toMatchObject({
          view,
          lock_timeout_s: 300,
          pooling_delay_s: null,
          pooling_delay_ms: null,
        });
        const [updated] = await db.query(
          `SELECT * FROM register_view($1, '2024-05-01 00:00:00', 60, 2, 'https://example.test/fn')`,
          [view],
        );
        expect(updated).toMatchObject({
          view,
          lock_timeout_s: 60,
          pooling_delay_s: 2,
          pooling_delay_ms: 2000,
          edge_function_url: 'https://example.test/fn',
        });
        expect(((updated as Row).updated_at as Date).getTime()).toBeGreaterThanOrEqual(
          ((defaults as Row).updated_at as Date).getTime(),
        );
        expect(await db.query(`SELECT * FROM views WHERE view = $1`, [view])).toHaveLength(1);
      });

      test('refuses a negative delay and a lock timeout below one second', async () => {
        const view = `view-${randomUUID()}`;
        expect(
          await failureOf(() => db.query(`SELECT * FROM register_view($1, -1, now()::timestamp)`, [view])),
        ).toMatchObject({
          code: '23514',
          constraint: 'views_pooling_delay_ms_check',
        });
        expect(
          await failureOf(() => db.query(`SELECT * FROM register_view($1, now()::timestamp, 0)`, [view])),
        ).toMatchObject({
          code: '23514',
          constraint: 'views_lock_timeout_s_check',
        });
      });

      test('creates a lock per existing stream; start_at decides where reading starts', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 3);
        const fromStart = `view-${randomUUID()}`;
        const fromNow = `view-${randomUUID()}`;
        await db.query(`SELECT * FROM register_view($1, 500, '2000-01-01')`, [fromStart]);
        await db.query(`SELECT * FROM register_view($1, 500, '2999-01-01')`, [fromNow]);
        const locksOfStream = async () =>
          Object.fromEntries(
            (
              await db.query<LockRow>(`SELECT * FROM locks WHERE decider_id = $1 ORDER BY view`, [deciderId])
            ).map((l) => [l.view, l]),
          );
        // Registering writes no lock row: the first consumer that asks (or advance_view) reads the log.
        expect(await locksOfStream()).toEqual({});
        await db.query(`SELECT advance_view($1)`, [fromStart]);
        await db.query(`SELECT advance_view($1)`, [fromNow]);
        const head = events[2]?.offset;
        const byView = await locksOfStream();
        expect(byView[fromStart]).toMatchObject({ offset: head, last_offset: 0 });
        // A view that starts later never delivers the history before its registration. Its frontier starts at the
        // oldest transaction running on the server, so one open elsewhere (another test's database) can make it read
        // the stream anyway: then into a lock row with nothing to deliver, the whole stream passed over.
        const early = byView[fromNow];
        expect(early && { offset: early.offset, last_offset: early.last_offset }).toEqual(
          early && { offset: head, last_offset: head },
        );
        const next = await append({ decider, deciderId, previousId: events[2]?.event_id ?? null });
        await db.query(`SELECT advance_view($1)`, [fromNow]);
        expect((await locksOfStream())[fromNow]).toMatchObject({
          offset: next.offset,
          last_offset: next.offset,
        });
      });

      test('re-registering with the same start_at keeps the progress; another start_at resets it', async () => {
        const decider = await newDecider();
        const { deciderId, events } = await stream(decider, 2);
        const view = `view-${randomUUID()}`;
        await db.query(`SELECT * FROM register_view($1, 500, '2000-01-01')`, [view]);
        await db.query(`SELECT * FROM ack_event($1, $2, $3)`, [view, deciderId, events[1]?.offset]);
        await db.query(`SELECT * FROM register_view($1, 250, '2000-01-01')`, [view]);
        await db.query(`SELECT advance_view($1)`, [view]);
        const [kept] = await db.query<LockRow>(`SELECT * FROM locks WHERE view = $1 AND decider_id = $2`, [
          view,
          deciderId,
        ]);
        expect(kept?.last_offset).toBe(events[1]?.offset);
        await db.query(`SELECT * FROM register_view($1, 250, '2000-01-02')`, [view]);
        expect(await db.query(`SELECT * FROM locks WHERE view = $1`, [view])).toEqual([]);
        await db.query(`SELECT advance_view($1)`, [view]);
        const [reset] = await db.query<LockRow>(`SELECT * FROM locks WHERE view = $1 AND decider_id = $2`, [
          view,
          deciderId,
        ]);
        expect(reset?.last_offset).toBe(0);
      });

      test('appending writes no lock row; advancing each view creates the lock of the new stream', async () => {
        const decider = await newDecider();
        const views = [`view-${randomUUID()}`, `view-${randomUUID()}`];
        for (const view of views)
          await db.query(`SELECT * FROM register_view($1, 500, '2000-01-01')`, [view]);
        const { deciderId, events } = await stream(decider, 2);
        expect(await db.query(`SELECT * FROM locks WHERE decider_id = $1`, [deciderId])).toEqual([]);
        for (const view of views) await db.query(`SELECT advance_view($1)`, [view]);
        const locks = await db.query<LockRow>(
          `SELECT * FROM locks WHERE decider_id = $1 AND view = ANY($2)`,
          [deciderId, views],
        );
        expect(locks).toHaveLength(2);
        for (const lock of locks) {
          expect(lock).toMatchObject({ offset: events[1]?.offset, last_offset: 0, offset_final: false });
        }
      });
    });

    describe('stream_events, ack_event, nack_event, schedule_nack_event', () => {
      /** A fresh view over fresh streams: registered from now on, it reads only the streams made after it. */
      async function viewWithStreams(streams: number, eventsEach: number) {
        const decider = await newDecider();
        const view = `view-${randomUUID()}`;
        await db.query(`SELECT * FROM register_view($1)`, [view]);
        const all = [];
        for (let s = 0; s < streams; s++) all.push(await stream(decider, eventsEach));
        return { view, decider, streams: all };
      }
      const lease = (view: string, limit = 1, seconds = 300) =>
        db.query<EventRow>(`SELECT * FROM stream_events($1, $2, $3)`, [view, limit, seconds]);
      const ack = (view: string, deciderId: string, offset: number | undefined) =>
        db.query<LockRow>(`SELECT * FROM ack_event($1, $2, $3)`, [view, deciderId, offset]);

      test('delivers the next unread event of up to `limit` streams, in offset order', async () => {
        const { view, streams } = await viewWithStreams(3, 2);
        const delivered = await lease(view, 10);
        expect(delivered.map((e) => e.event_id)).toEqual(streams.map((s) => s.events[0]?.event_id));
        expect(await lease(view, 10)).toEqual([]);
      });

      test('the default limit is one stream', async () => {
        const { view } = await viewWithStreams(2, 1);
        expect(await db.query(`SELECT * FROM stream_events($1)`, [view])).toHaveLength(1);
      });

      test('ack moves the stream on to its next event and releases it', async () => {
        const { view, streams } = await viewWithStreams(1, 3);
        const { deciderId, events } = streams[0] as { deciderId: string; events: EventRow[] };
        const [first] = await lease(view);
        expect(first?.event_id).toBe(events[0]?.event_id);
        const [lock] = await ack(view, deciderId, first?.offset);
        expect(lock).toMatchObject({ view, decider_id: deciderId, last_offset: first?.offset });
        const [second] = await lease(view);
        expect(second?.event_id).toBe(events[1]?.event_id);
      });

      test('an ack may cover several events of the stream at once', async () => {
        const { view, streams } = await viewWithStreams(1, 3);
        const { deciderId, events } = streams[0] as { deciderId: string; events: EventRow[] };
        await lease(view);
        await ack(view, deciderId, events[1]?.offset);
        const [next] = await lease(view);
        expect(next?.event_id).toBe(events[2]?.event_id);
      });

      test('an ack never moves the position backwards', async () => {
        const { view, streams } = await viewWithStreams(1, 3);
        const { deciderId, events } = streams[0] as { deciderId: string; events: EventRow[] };
        await ack(view, deciderId, events[1]?.offset);
        const [lock] = await ack(view, deciderId, events[0]?.offset);
        expect(lock?.last_offset).toBe(events[1]?.offset);
      });

      test('an ack for an offset that is not an event of the stream is refused and changes nothing', async () => {
        const { view, streams } = await viewWithStreams(2, 1);
        const [a, b] = streams as { deciderId: string; events: EventRow[] }[];
        await db.query(`SELECT advance_view($1)`, [view]);
        const failure = await failureOf(() => ack(view, a?.deciderId ?? '', b?.events[0]?.offset));
        expect(failure.code).toBe('22023');
        expect(failure.message).toContain('is not an event of stream');
        const [lock] = await db.query<LockRow>(`SELECT * FROM locks WHERE view = $1 AND decider_id = $2`, [
          view,
          a?.deciderId,
        ]);
        expect(lock?.last_offset).toBe(0);
      });

      test('a leased stream is not delivered again until its lease ends', async () => {
        const { view, streams } = await viewWithStreams(1, 2);
        const [first] = await lease(view, 1, 1);
        expect(first?.event_id).toBe(streams[0]?.events[0]?.event_id);
        expect(await lease(view)).toEqual([]);
        await new Promise((resolve) => setTimeout(resolve, 1100));
        const [again] = await lease(view);
        expect(again?.event_id).toBe(first?.event_id);
      });

      test('nack releases the stream at once, to deliver the same event again', async () => {
        const { view, streams } = await viewWithStreams(1, 2);
        const deciderId = streams[0]?.deciderId ?? '';
        const [first] = await lease(view);
        const [lock] = await db.query<LockRow>(`SELECT * FROM nack_event($1, $2)`, [view, deciderId]);
        expect(lock?.last_offset).toBe(0);
        const [again] = await lease(view);
        expect(again?.event_id).toBe(first?.event_id);
      });

      test('schedule_nack releases the stream after the given delay', async () => {
        const { view, streams } = await viewWithStreams(1, 1);
        const deciderId = streams[0]?.deciderId ?? '';
        const [first] = await lease(view);
        await db.query(`SELECT * FROM schedule_nack_event($1, $2, 800)`, [view, deciderId]);
        expect(await lease(view)).toEqual([]);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const [again] = await lease(view);
        expect(again?.event_id).toBe(first?.event_id);
      });

      test('a caught-up stream is pending again as soon as it gets a new event', async () => {
        const { view, decider, streams } = await viewWithStreams(1, 1);
        const { deciderId, events } = streams[0] as { deciderId: string; events: EventRow[] };
        await lease(view);
        await ack(view, deciderId, events[0]?.offset);
        expect(await lease(view)).toEqual([]);
        const next = await append({ decider, deciderId, previousId: events[0]?.event_id ?? null });
        const [delivered] = await lease(view);
        expect(delivered?.event_id).toBe(next.event_id);
      });

      test("a closed stream's events are delivered too, and its lock says it is final", async () => {
        const { view, decider, streams } = await viewWithStreams(1, 1);
        const { deciderId, events } = streams[0] as { deciderId: string; events: EventRow[] };
        const closing = await append({
          decider,
          deciderId,
          previousId: events[0]?.event_id ?? null,
          final: true,
        });
        await ack(view, deciderId, events[0]?.offset);
        const [delivered] = await lease(view);
        expect(delivered?.event_id).toBe(closing.event_id);
        const [lock] = await ack(view, deciderId, closing.offset);
        expect(lock?.offset_final).toBe(true);
      });

      test('an unknown view streams nothing', async () => {
        expect(await lease(`view-${randomUUID()}`, 10)).toEqual([]);
      });

      test('refuses a negative limit and a lease shorter than a second', async () => {
        const { view } = await viewWithStreams(1, 1);
        expect((await failureOf(() => lease(view, -1))).code).toBe('22023');
        expect((await failureOf(() => lease(view, 1, 0))).code).toBe('22023');
        const deciderId = `stream-${randomUUID()}`;
        expect(
          (
            await failureOf(() =>
              db.query(`SELECT * FROM schedule_nack_event($1, $2, -5)`, [view, deciderId]),
            )
          ).code,
        ).toBe('22023');
      });
    });
  });
}
