/** The order decider: an order is created for a restaurant, then prepared, which closes its stream (final). */
import { type Decider, defineEvents, type EventOf, event } from '@fstore/store';
import { z } from 'zod';
import { CommandRejected } from './rejections.js';

export const orderEvents = defineEvents('Order', {
  OrderCreated: event({
    description: 'An order the restaurant accepted, waiting for the kitchen',
    schema: z.object({ restaurantId: z.string().min(1), dishes: z.array(z.string()).min(1) }),
  }),
  OrderPrepared: event<{ by: string }>({
    description: 'The kitchen prepared the order: it is done',
    final: true,
  }),
});
export type OrderEvent = EventOf<typeof orderEvents>;

export type OrderCommand =
  | { kind: 'CreateOrder'; restaurantId: string; dishes: string[] }
  | { kind: 'MarkOrderPrepared'; by: string };

export type OrderState = { status: 'created' | 'prepared'; restaurantId: string } | null;

export const orderDecider: Decider<OrderCommand, OrderState, OrderEvent> = {
  initialState: null,
  decide(command, state) {
    switch (command.kind) {
      case 'CreateOrder':
        if (state) throw new CommandRejected('the order exists already');
        return [
          { type: 'OrderCreated', data: { restaurantId: command.restaurantId, dishes: command.dishes } },
        ];
      case 'MarkOrderPrepared':
        if (!state) throw new CommandRejected('no such order');
        if (state.status === 'prepared') throw new CommandRejected('the order is prepared already');
        return [{ type: 'OrderPrepared', data: { by: command.by } }];
    }
  },
  evolve(state, e) {
    switch (e.type) {
      case 'OrderCreated':
        return { status: 'created', restaurantId: e.data.restaurantId };
      case 'OrderPrepared':
        return state && { ...state, status: 'prepared' };
    }
  },
};
