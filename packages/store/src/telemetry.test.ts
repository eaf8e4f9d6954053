/**
 * OpenTelemetry on the command side, with the SDK's in-memory exporter: the span tree of a command (handle, its
 * load, its append), the attributes that say what happened (attempts, conflicts, events), the append's trace context
 * stored with the events it wrote, and the correlation id taken from the caller's trace. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { installTelemetry, spanTree } from '@fstore/test-harness/telemetry';
import { trace } from '@opentelemetry/api';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { createCommandHandler, type Decider } from './command-handler.js';
import { StreamClosedError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';

const telemetry = installTelemetry();
const database = await createTestDatabase();
afterAll(async () => {
  await telemetry.uninstall();
  await database.drop();
});
const db = drizzle(database.connect({ max: 4 }));

const counterEvents = defineEvents('TracedCounter', {
  Added: event<{ by: number }>(),
  Closed: event<Record<string, never>>({ final: true }),
});
const store = createEventStore(db, counterEvents);
beforeAll(() => store.register());
const spansOf = (deciderId: string) =>
  telemetry.spans().filter((span) => span.attributes['fstore.decider_id'] === deciderId);
let before = 0;
beforeEach(() => {
  before = telemetry.spans().length;
});
const newSpans = () => telemetry.spans().slice(before);

/** A counter that, once, lets another writer append before its own append (a conflict). */
function counter(interfere?: (id: string) => Promise<void>) {
  let interfered = false;
  const decider: Decider<{ id: string; add: number }, number, EventOf<typeof counterEvents>> = {
    initialState: 0,
    async decide(command) {
      if (interfere && !interfered) {
        interfered = true;
        await interfere(command.id);
      }
      return [{ type: 'Added', data: { by: command.add } }];
    },
    evolve: (total, e) => (e.type === 'Added' ? total + e.data.by : total),
  };
  return decider;
}

test('a command is one span, with its load and its append inside, and says what happened', async () => {
  const id = `counter-${randomUUID()}`;
  const handled = await createCommandHandler(store, counter())(id, { id, add: 2 });
  expect(spanTree(newSpans())).toEqual([
    'handle TracedCounter',
    '  load TracedCounter',
    '  append TracedCounter',
  ]);
  const [handle, load, append] = ['handle', 'load', 'append'].map((verb) =>
    spansOf(id).find((span) => span.name === `${verb} TracedCounter`),
  );
  expect(handle?.attributes).toMatchObject({
    'fstore.decider': 'TracedCounter',
    'fstore.decider_id': id,
    'fstore.command_id': handled.commandId,
    'fstore.command.attempts': 1,
    'fstore.command.conflicts': 0,
    'fstore.command.replayed': false,
    'fstore.event_count': 1,
  });
  expect(load?.attributes).toMatchObject({
    'db.system.name': 'postgresql',
    'db.operation.name': 'get_events',
    'fstore.event_count': 0,
  });
  expect(append?.attributes).toMatchObject({
    'db.system.name': 'postgresql',
    'db.operation.name': 'append_events',
    'db.collection.name': 'events',
    'fstore.event_count': 1,
    'fstore.command_id': handled.commandId,
  });
});

test("the events keep their append's trace context: a traceparent naming the append span", async () => {
  const id = `counter-${randomUUID()}`;
  const [stored] = (await createCommandHandler(store, counter())(id, { id, add: 1 })).events;
  const append = spansOf(id).find((span) => span.name === 'append TracedCounter');
  const { traceId, spanId } = append?.spanContext() ?? {};
  expect(stored?.metadata?.traceparent).toBe(`00-${traceId}-${spanId}-01`);
  expect((await store.load(id))[0]?.metadata?.traceparent).toBe(stored?.metadata?.traceparent);
});

test('a conflict shows as a second load and attempt, counted on the command span', async () => {
  const id = `counter-${randomUUID()}`;
  const other = createCommandHandler(store, counter());
  const handle = createCommandHandler(
    store,
    counter(async (streamId) => {
      await other(streamId, { id: streamId, add: 10 });
    }),
  );
  const handled = await handle(id, { id, add: 1 });
  expect(handled.attempts).toBe(2);
  const span = spansOf(id).find(
    (s) => s.name === 'handle TracedCounter' && s.attributes['fstore.command_id'] === handled.commandId,
  );
  expect(span?.attributes).toMatchObject({ 'fstore.command.attempts': 2, 'fstore.command.conflicts': 1 });
  const children = spansOf(id).filter((s) => s.parentSpanContext?.spanId === span?.spanContext().spanId);
  // The other writer's command ran while this one decided; this one's first append was refused (an error on its
  // span), the second landed.
  expect(children.map((s) => [s.name, s.status.code])).toEqual([
    ['load TracedCounter', 0],
    ['handle TracedCounter', 0],
    ['append TracedCounter', 2],
    ['load TracedCounter', 0],
    ['append TracedCounter', 0],
  ]);
  expect(children[2]?.attributes['error.type']).toBe('OptimisticConcurrencyError');
});

test("inside the caller's trace, the command is a child span and its trace id is the correlation id", async () => {
  const id = `counter-${randomUUID()}`;
  const handled = await trace
    .getTracer('the-application')
    .startActiveSpan('POST /counters', async (request) => {
      try {
        return await createCommandHandler(store, counter())(id, { id, add: 1 });
      } finally {
        request.end();
      }
    });
  const request = newSpans().find((span) => span.name === 'POST /counters');
  expect(spanTree(newSpans())).toEqual([
    'POST /counters',
    '  handle TracedCounter',
    '    load TracedCounter',
    '    append TracedCounter',
  ]);
  expect(handled.events[0]?.metadata?.correlationId).toBe(request?.spanContext().traceId);
  expect(handled.events[0]?.metadata?.causationId).toBe(handled.commandId);
});

test('a retry of a stored append with the same ids returns it, though each try is traced on its own', async () => {
  const id = `counter-${randomUUID()}`;
  const input = [{ type: 'Added' as const, data: { by: 1 }, eventId: randomUUID() }];
  const commandId = randomUUID();
  const first = await store.append(id, input, { expectedLastEventId: null, commandId });
  const again = await store.append(id, input, { expectedLastEventId: null, commandId });
  expect(again.map((e) => e.eventId)).toEqual(first.map((e) => e.eventId));
  const appends = spansOf(id).filter((span) => span.name === 'append TracedCounter');
  expect(appends).toHaveLength(2);
  expect(appends[0]?.spanContext().traceId).not.toBe(appends[1]?.spanContext().traceId);
});

test('a refused append ends its span in error, named by the error class', async () => {
  const id = `counter-${randomUUID()}`;
  await store.append(id, [{ type: 'Closed', data: {} }], { expectedLastEventId: null });
  const [last] = await store.load(id);
  const refused = await store
    .append(id, [{ type: 'Added', data: { by: 1 } }], { expectedLastEventId: last?.eventId ?? null })
    .catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(StreamClosedError);
  const span = spansOf(id).findLast((s) => s.name === 'append TracedCounter');
  expect(span?.status).toMatchObject({ code: 2 });
  expect(span?.attributes['error.type']).toBe('StreamClosedError');
  expect(span?.events.map((e) => e.name)).toEqual(['exception']);
});
