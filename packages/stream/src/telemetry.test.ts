/**
 * OpenTelemetry on the projection side, with the SDK's in-memory exporters: each batch is a span of its own trace
 * with a span per handler call inside, linked to the span that appended the event, so that one trace view leads
 * from a command to every projection it caused; failures end spans in error; the counters, the batch duration and
 * the lag gauges say what the workers did and how far behind each view is. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import {
  createCommandHandler,
  createEventStore,
  type Database,
  type Decider,
  type DeciderEvents,
  defineEvents,
  type EventDefinitions,
  type EventOf,
  event,
} from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { installTelemetry, type MetricPoint, spanTree } from '@fstore/test-harness/telemetry';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, expect, test } from 'vitest';
import { createProjection, type Projection } from './projection.js';

const telemetry = installTelemetry();
const database = await createTestDatabase();
afterAll(async () => {
  await telemetry.uninstall();
  await database.drop();
});
const db: Database = drizzle(database.connect({ max: 8 }));

/** An order decider of its own for each test (`TracedOrder<suffix>`): its views see no other test's events. */
async function orderDecider(suffix: string) {
  const orders = defineEvents(`TracedOrder${suffix}`, {
    Placed: event<{ total: number }>(),
    Paid: event<{ amount: number }>(),
  });
  const store = createEventStore(db, orders);
  await store.register();
  const order: Decider<{ total: number }, number, EventOf<typeof orders>> = {
    initialState: 0,
    decide: (command) => [
      { type: 'Placed', data: { total: command.total } },
      { type: 'Paid', data: { amount: command.total } },
    ],
    evolve: (state) => state + 1,
  };
  return { orders, placeOrder: createCommandHandler(store, order) };
}

const running: Projection[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});
function project(
  view: string,
  orders: DeciderEvents<EventDefinitions>,
  handle: (type: string) => Promise<void> | void,
  logBatches = true,
) {
  const projection = createProjection({
    db,
    view,
    events: [orders],
    logBatches,
    pollIntervalMs: 20,
    maxAttempts: 2,
    backoff: { initialMs: 10, maxMs: 20 },
    handle: (e) => handle(e.type),
  });
  running.push(projection);
  return projection;
}
const points = async (name: string, view: string): Promise<MetricPoint[]> =>
  (await telemetry.collect()).filter((point) => point.name === name && point.attributes.view === view);
const sum = (list: MetricPoint[]) => list.reduce((total, point) => total + point.value, 0);

test.each([
  ['log batches', true, 'A'],
  ['leases', false, 'B'],
])(
  'through %s: a batch span, a span per handler call linked to the append, one trace view from the command on',
  async (_, logBatches, suffix) => {
    const { orders, placeOrder } = await orderDecider(suffix);
    const view = `traced-${randomUUID()}`;
    const id = `order-${randomUUID()}`;
    const placed = await placeOrder(id, { total: 3 });
    const projection = project(view, orders, () => {}, logBatches);
    await projection.start();
    await expect.poll(() => projection.stats.handled, { timeout: 60_000 }).toBe(2);

    const spans = telemetry.spans();
    const append = spans.find(
      (s) => s.name === `append TracedOrder${suffix}` && s.attributes['fstore.decider_id'] === id,
    );
    const handlerSpans = spans.filter(
      (s) => s.name.startsWith('project ') && s.attributes['fstore.decider_id'] === id,
    );
    expect(handlerSpans.map((s) => s.name)).toEqual(['project Placed', 'project Paid']);
    for (const [index, handler] of handlerSpans.entries()) {
      // Linked to the append, across traces: the batch's trace is the worker's own.
      expect(handler.links.map((link) => link.context.spanId)).toEqual([append?.spanContext().spanId]);
      expect(handler.links[0]?.context.traceId).toBe(append?.spanContext().traceId);
      expect(handler.spanContext().traceId).not.toBe(append?.spanContext().traceId);
      expect(handler.attributes).toMatchObject({
        'messaging.system': 'fstore',
        'messaging.operation.type': 'process',
        'messaging.message.id': placed.events[index]?.eventId,
        'messaging.message.conversation_id': placed.commandId,
        'fstore.view': view,
        'fstore.offset': placed.events[index]?.offset,
        'fstore.attempt': 1,
      });
    }
    const batch = spans.find((s) => s.spanContext().spanId === handlerSpans[0]?.parentSpanContext?.spanId);
    expect(batch?.name).toBe(`process ${view}`);
    expect(batch?.parentSpanContext).toBeUndefined();
    expect(batch?.attributes).toMatchObject({
      'messaging.consumer.group.name': view,
      'messaging.batch.message_count': 2,
    });
    expect(spanTree(spans.filter((s) => s.spanContext().traceId === batch?.spanContext().traceId))).toEqual([
      `process ${view}`,
      '  project Placed',
      '  project Paid',
    ]);
    // The command's side of the same story.
    expect(spanTree(spans.filter((s) => s.spanContext().traceId === append?.spanContext().traceId))).toEqual([
      `handle TracedOrder${suffix}`,
      `  load TracedOrder${suffix}`,
      `  append TracedOrder${suffix}`,
    ]);
    expect(sum(await points('fstore.projection.handled', view))).toBe(2);
    const durations = await points('fstore.projection.batch.duration', view);
    expect(sum(durations)).toBeGreaterThanOrEqual(1);
    expect(durations[0]?.unit).toBe('s');
  },
);

test('a failing handler ends its span in error; failures and the parked event are counted', async () => {
  const { orders, placeOrder } = await orderDecider('C');
  const view = `failing-${randomUUID()}`;
  const id = `order-${randomUUID()}`;
  await placeOrder(id, { total: 1 });
  const projection = project(
    view,
    orders,
    (type) => {
      if (type === 'Paid') throw new RangeError('cannot project a payment');
    },
    false,
  );
  await projection.start();
  await expect.poll(() => projection.stats.parked, { timeout: 60_000 }).toBe(1);
  const failed = telemetry
    .spans()
    .filter((s) => s.name === 'project Paid' && s.attributes['fstore.decider_id'] === id);
  expect(
    failed.map((s) => [s.status.code, s.attributes['error.type'], s.attributes['fstore.attempt']]),
  ).toEqual([
    [2, 'RangeError', 1],
    [2, 'RangeError', 2],
  ]);
  expect(sum(await points('fstore.projection.failed', view))).toBe(2);
  expect(sum(await points('fstore.projection.parked', view))).toBe(1);
});

test('the lag gauges show how far behind a view is while its worker runs, and fall to zero as it catches up', async () => {
  const { orders, placeOrder } = await orderDecider('D');
  const view = `lagging-${randomUUID()}`;
  for (let i = 0; i < 3; i++) await placeOrder(`order-${randomUUID()}`, { total: i });
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const projection = project(view, orders, () => released);
  // No worker yet: no gauge for the view.
  expect(await points('fstore.projection.lag', view)).toEqual([]);
  await projection.start();
  const [lag] = await points('fstore.projection.lag', view);
  expect(lag?.value).toBe(6);
  const [age] = await points('fstore.projection.lag.age', view);
  expect(age?.unit).toBe('s');
  expect(age?.value).toBeGreaterThan(0);
  release();
  await expect
    .poll(async () => (await points('fstore.projection.lag', view))[0]?.value, { timeout: 60_000 })
    .toBe(0);
  expect((await points('fstore.projection.lag.age', view))[0]?.value).toBe(0);
});
