/**
 * The restaurant decider (fmodel's classic example): a restaurant is created with a menu, changes its menu, and
 * takes orders for dishes on its menu. One stream per restaurant.
 */
import { type Decider, defineEvents, type EventOf, event } from '@fstore/store';
import { z } from 'zod';
import { CommandRejected } from './rejections.js';

const dish = z.object({ id: z.string().min(1), name: z.string().min(1), price: z.number().positive() });
export type Dish = z.infer<typeof dish>;

export const restaurantEvents = defineEvents('Restaurant', {
  RestaurantCreated: event({
    description: 'A restaurant opened, with its first menu',
    schema: z.object({ name: z.string().min(1), menu: z.array(dish).min(1) }),
  }),
  MenuChanged: event({
    description: 'The menu was replaced',
    schema: z.object({ menu: z.array(dish).min(1) }),
  }),
  OrderPlaced: event({
    description: 'The restaurant accepted an order for dishes on its menu',
    schema: z.object({ orderId: z.string().min(1), dishes: z.array(z.string()).min(1) }),
  }),
});
export type RestaurantEvent = EventOf<typeof restaurantEvents>;

export type RestaurantCommand =
  | { kind: 'CreateRestaurant'; name: string; menu: Dish[] }
  | { kind: 'ChangeMenu'; menu: Dish[] }
  | { kind: 'PlaceOrder'; orderId: string; dishes: string[] };

export type RestaurantState = { name: string; menu: Dish[]; orders: number } | null;

export const restaurantDecider: Decider<RestaurantCommand, RestaurantState, RestaurantEvent> = {
  initialState: null,
  decide(command, state) {
    switch (command.kind) {
      case 'CreateRestaurant':
        if (state) throw new CommandRejected(`restaurant ${state.name} exists already`);
        return [{ type: 'RestaurantCreated', data: { name: command.name, menu: command.menu } }];
      case 'ChangeMenu':
        if (!state) throw new CommandRejected('no such restaurant');
        return [{ type: 'MenuChanged', data: { menu: command.menu } }];
      case 'PlaceOrder': {
        if (!state) throw new CommandRejected('no such restaurant');
        const missing = command.dishes.filter((id) => !state.menu.some((d) => d.id === id));
        if (missing.length > 0)
          throw new CommandRejected(`not on the menu of ${state.name}: ${missing.join(', ')}`);
        return [{ type: 'OrderPlaced', data: { orderId: command.orderId, dishes: command.dishes } }];
      }
    }
  },
  evolve(state, e) {
    switch (e.type) {
      case 'RestaurantCreated':
        return { name: e.data.name, menu: e.data.menu, orders: 0 };
      case 'MenuChanged':
        return state && { ...state, menu: e.data.menu };
      case 'OrderPlaced':
        return state && { ...state, orders: state.orders + 1 };
    }
  },
};
