/**
 * Event metadata: what the store stores with each event of an append (correlation, causation, trace context,
 * headers), how every read returns it, how the command handler fills it in and a projection passes it on
 * (`causedBy`), how the events of one correlation id are found, and how bad metadata is refused with nothing
 * written. On a real PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createCommandHandler, type Decider } from './command-handler.js';
import { InvalidMetadataError, ValidationError } from './errors.js';
import { createEventStore } from './event-store.js';
import { defineEvents, type EventOf, event } from './events.js';
import { getCorrelatedEvents } from './functions.js';
import { causedBy, type Metadata } from './metadata.js';
import { eventsOfCorrelation } from './queries.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db = drizzle(database.connect({ max: 4 }));

const orderEvents = defineEvents('MetaOrder', {
  Placed: event<{ total: number }>(),
  Paid: event<{ amount: number }>(),
});
const shipmentEvents = defineEvents('MetaShipment', { Requested: event<{ order: string }>() });
const orders = createEventStore(db, orderEvents);
const shipments = createEventStore(db, shipmentEvents);
beforeAll(async () => {
  await orders.register();
  await shipments.register();
});
const stream = (prefix: string) => `${prefix}-${randomUUID()}`;

describe('the store', () => {
  test('stores the metadata of an append with each of its events; load, loadLast and iterate return it', async () => {
    const id = stream('order');
    const metadata: Metadata = {
      correlationId: `request-${randomUUID()}`,
      causationId: randomUUID(),
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      headers: { user: 'ada', roles: ['admin'], attempt: 1 },
    };
    const appended = await orders.append(
      id,
      [
        { type: 'Placed', data: { total: 10 } },
        { type: 'Paid', data: { amount: 10 } },
      ],
      { expectedLastEventId: null, metadata },
    );
    expect(appended.map((e) => e.metadata)).toEqual([metadata, metadata]);
    expect((await orders.load(id)).map((e) => e.metadata)).toEqual([metadata, metadata]);
    expect((await orders.loadLast(id))?.metadata).toEqual(metadata);
  });

  test('an append without metadata stores none: null on every read', async () => {
    const id = stream('order');
    const [placed] = await orders.append(id, [{ type: 'Placed', data: { total: 1 } }], {
      expectedLastEventId: null,
    });
    expect(placed?.metadata).toBeNull();
    expect((await orders.load(id))[0]?.metadata).toBeNull();
  });

  test.each<[string, unknown]>([
    ['an unknown key (headers hold the free-form ones)', { user: 'ada' }],
    ['a correlation id that is no text', { correlationId: 42 }],
    ['a correlation id of 201 characters', { correlationId: 'c'.repeat(201) }],
    ['headers that are no object', { headers: 'user=ada' }],
    ['over 8 KiB', { headers: { note: 'x'.repeat(9000) } }],
    ['an array', ['c-1']],
  ])('refuses %s with InvalidMetadataError, writing nothing', async (_, metadata) => {
    const id = stream('order');
    const failure = await orders
      .append(id, [{ type: 'Placed', data: { total: 1 } }], {
        expectedLastEventId: null,
        metadata: metadata as Metadata,
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(InvalidMetadataError);
    expect(failure).toBeInstanceOf(ValidationError);
    expect((failure as ValidationError).issues[0]?.path).toBe('metadata');
    expect(await orders.load(id)).toEqual([]);
  });

  test('refuses header values that are not JSON before any SQL runs', async () => {
    const id = stream('order');
    const failure = await orders
      .append(id, [{ type: 'Placed', data: { total: 1 } }], {
        expectedLastEventId: null,
        metadata: { headers: { at: new Date() as never } },
      })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ValidationError);
    expect((failure as ValidationError).issues[0]?.path).toBe('metadata.headers.at');
    expect(await orders.load(id)).toEqual([]);
  });
});

// An order: place it once; a shipment: request it once.
const orderDecider: Decider<{ place: number }, boolean, EventOf<typeof orderEvents>> = {
  initialState: false,
  decide: (command, placed) => (placed ? [] : [{ type: 'Placed', data: { total: command.place } }]),
  evolve: () => true,
};
const shipmentDecider: Decider<{ order: string }, boolean, EventOf<typeof shipmentEvents>> = {
  initialState: false,
  decide: (command, requested) => (requested ? [] : [{ type: 'Requested', data: { order: command.order } }]),
  evolve: () => true,
};
const placeOrder = createCommandHandler(orders, orderDecider);
const requestShipment = createCommandHandler(shipments, shipmentDecider);

describe('the command handler', () => {
  test('fills it in: the command is the cause, and starts the conversation unless the caller names one', async () => {
    const handled = await placeOrder(stream('order'), { place: 5 });
    expect(handled.events[0]?.metadata).toEqual({
      correlationId: handled.commandId,
      causationId: handled.commandId,
    });
  });

  test("keeps the caller's correlation id, cause and headers", async () => {
    const metadata = { correlationId: `request-${randomUUID()}`, headers: { user: 'ada' } };
    const handled = await placeOrder(stream('order'), { place: 5 }, { metadata });
    expect(handled.events[0]?.metadata).toEqual({ ...metadata, causationId: handled.commandId });
    const caused = await placeOrder(
      stream('order'),
      { place: 5 },
      { metadata: { causationId: 'upstream-1' } },
    );
    expect(caused.events[0]?.metadata).toMatchObject({ causationId: 'upstream-1' });
  });

  test('a reactor passes the conversation on with causedBy, and eventsOfCorrelation finds all of it in log order', async () => {
    const correlationId = `request-${randomUUID()}`;
    const order = stream('order');
    const placed = await placeOrder(order, { place: 7 }, { metadata: { correlationId } });
    const [placedEvent] = placed.events;
    if (!placedEvent) throw new Error('the order was not placed');
    // What a projection that reacts to Placed does: a command on another decider, caused by the event.
    const shipment = await requestShipment(
      stream('shipment'),
      { order },
      { metadata: causedBy(placedEvent) },
    );
    expect(shipment.events[0]?.metadata).toEqual({ correlationId, causationId: placedEvent.eventId });

    const found = await eventsOfCorrelation(db, correlationId);
    expect(found.map((row) => row.eventId)).toEqual([placedEvent.eventId, shipment.events[0]?.eventId]);
    expect((await getCorrelatedEvents(db, correlationId)).map((row) => row.eventId)).toEqual(
      found.map((row) => row.eventId),
    );
    // Another conversation is not found.
    await placeOrder(
      stream('order'),
      { place: 1 },
      { metadata: { correlationId: `${correlationId}-other` } },
    );
    expect(await eventsOfCorrelation(db, correlationId)).toHaveLength(2);
  });

  test('causedBy of an event without metadata starts the conversation at that event', () => {
    expect(causedBy({ eventId: 'e-1', metadata: null })).toEqual({
      correlationId: 'e-1',
      causationId: 'e-1',
    });
  });
});
