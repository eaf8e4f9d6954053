/**
 * Command producers: several run at once, on a few restaurants, so their commands collide on the same streams and
 * the command handler retries them. Some commands break the deciders' rules and are rejected.
 */
import { createCommandHandler, createEventStore, type Database } from '@fstore/store';
import { orderDecider, orderEvents } from './domain/order.js';
import { CommandRejected } from './domain/rejections.js';
import { type Dish, restaurantDecider, restaurantEvents } from './domain/restaurant.js';

export interface ProducerStats {
  commands: number;
  rejected: number;
  /** Extra attempts: a concurrent append got there first, the handler reloaded and decided again. */
  retries: number;
  eventsAppended: number;
  ordersPlaced: number;
  ordersPrepared: number;
}

export const newStats = (): ProducerStats => ({
  commands: 0,
  rejected: 0,
  retries: 0,
  eventsAppended: 0,
  ordersPlaced: 0,
  ordersPrepared: 0,
});

export interface ProduceOptions {
  db: Database;
  producers: number;
  orders: number;
  restaurants: number;
  /** A prefix that keeps this run's streams apart from earlier runs on the same database. */
  run: string;
  stats: ProducerStats;
  signal?: AbortSignal;
}

const menuOf = (restaurant: number, version = 0): Dish[] =>
  Array.from({ length: 4 + version }, (_, d) => ({
    id: `dish-${d + 1}`,
    name: `dish ${d + 1} of ${restaurant}`,
    price: 5 + d,
  }));

/** Creates the restaurants, then runs the producers over the orders until done (or aborted). */
export async function produce(options: ProduceOptions): Promise<void> {
  const { db, stats, signal } = options;
  const handleRestaurant = createCommandHandler(createEventStore(db, restaurantEvents), restaurantDecider, {
    maxAttempts: 50,
    backoffMs: 2,
    maxBackoffMs: 50,
  });
  const handleOrder = createCommandHandler(createEventStore(db, orderEvents), orderDecider);
  const restaurantId = (r: number) => `${options.run}-restaurant-${r}`;

  async function command(
    run: () => Promise<{ events: unknown[]; attempts: number }>,
    onDone?: () => void,
  ): Promise<boolean> {
    stats.commands++;
    try {
      const result = await run();
      stats.retries += result.attempts - 1;
      stats.eventsAppended += result.events.length;
      onDone?.();
      return true;
    } catch (error) {
      if (error instanceof CommandRejected) {
        stats.rejected++;
        return false;
      }
      throw error;
    }
  }

  for (let r = 0; r < options.restaurants; r++) {
    await command(() =>
      handleRestaurant(restaurantId(r), {
        kind: 'CreateRestaurant',
        name: `Restaurant ${r + 1}`,
        menu: menuOf(r),
      }),
    );
  }
  // Creating one twice is against the rules.
  await command(() =>
    handleRestaurant(restaurantId(0), { kind: 'CreateRestaurant', name: 'Again', menu: menuOf(0) }),
  );

  await Promise.all(
    Array.from({ length: options.producers }, async (_, p) => {
      for (let i = p; i < options.orders && !signal?.aborted; i += options.producers) {
        const r = i % options.restaurants;
        if (i % 7 === 6) {
          await command(() =>
            handleRestaurant(restaurantId(r), { kind: 'ChangeMenu', menu: menuOf(r, 1 + (i % 3)) }),
          );
        }
        const orderId = `${options.run}-order-${i}`;
        // One order in ten asks for a dish that is on no menu: the restaurant refuses it.
        const dishes =
          i % 10 === 9 ? ['dish-1', 'dish-unknown'] : [`dish-${1 + (i % 4)}`, `dish-${1 + ((i + 1) % 4)}`];
        const placed = await command(
          () => handleRestaurant(restaurantId(r), { kind: 'PlaceOrder', orderId, dishes }),
          () => stats.ordersPlaced++,
        );
        if (!placed) continue;
        await command(() =>
          handleOrder(orderId, { kind: 'CreateOrder', restaurantId: restaurantId(r), dishes }),
        );
        await command(
          () => handleOrder(orderId, { kind: 'MarkOrderPrepared', by: `cook ${1 + (i % 3)}` }),
          () => stats.ordersPrepared++,
        );
        // Marking it prepared twice is against the rules (and its stream is closed anyway).
        if (i % 5 === 0)
          await command(() => handleOrder(orderId, { kind: 'MarkOrderPrepared', by: 'again' }));
      }
    }),
  );
}
