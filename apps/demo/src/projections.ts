/**
 * The two views and their projection workers. Each handler writes its read model and the audit row in the
 * transaction that acknowledges the event.
 */
import { createProjection, type Logger, type Projection, type Transaction } from '@fstore/stream';
import { eq, sql } from 'drizzle-orm';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { orderEvents } from './domain/order.js';
import { restaurantEvents } from './domain/restaurant.js';
import { orders, projectedEvents, restaurants } from './read-model.js';
import { views } from './setup.js';

async function audit(tx: Transaction, view: string, deciderId: string, offset: number) {
  await tx.insert(projectedEvents).values({ view, deciderId, offset });
}

/**
 * How to empty each view's read model (and its audit rows) for a rebuild: what rebuildProjection, or the dashboard's
 * Rebuild button, needs besides the view's name. The events are then replayed from the beginning of the log.
 */
export const readModelResets: Record<string, { reset(tx: Transaction): Promise<void> }> = {
  [views.restaurants]: {
    async reset(tx) {
      await tx.delete(restaurants);
      await tx.delete(projectedEvents).where(eq(projectedEvents.view, views.restaurants));
    },
  },
  [views.orders]: {
    async reset(tx) {
      await tx.delete(orders);
      await tx.delete(projectedEvents).where(eq(projectedEvents.view, views.orders));
    },
  },
};

export interface WorkerOptions {
  db: PostgresJsDatabase;
  concurrency?: number;
  logger?: Logger;
}

export function restaurantMenusWorker({ db, concurrency = 4, logger }: WorkerOptions): Projection {
  return createProjection({
    db,
    view: views.restaurants,
    events: [restaurantEvents],
    concurrency,
    pollIntervalMs: 200,
    ...(logger ? { logger } : {}),
    async handle(event, tx) {
      switch (event.type) {
        case 'RestaurantCreated':
          await tx
            .insert(restaurants)
            .values({ id: event.deciderId, name: event.data.name, menu: event.data.menu });
          break;
        case 'MenuChanged':
          await tx
            .update(restaurants)
            .set({ menu: event.data.menu })
            .where(sql`${restaurants.id} = ${event.deciderId}`);
          break;
        case 'OrderPlaced':
          await tx
            .update(restaurants)
            .set({ ordersPlaced: sql`${restaurants.ordersPlaced} + 1` })
            .where(sql`${restaurants.id} = ${event.deciderId}`);
          break;
      }
      await audit(tx, views.restaurants, event.deciderId, event.offset);
    },
  });
}

export function orderBoardWorker({ db, concurrency = 4, logger }: WorkerOptions): Projection {
  return createProjection({
    db,
    view: views.orders,
    events: [orderEvents],
    concurrency,
    pollIntervalMs: 200,
    ...(logger ? { logger } : {}),
    async handle(event, tx) {
      switch (event.type) {
        case 'OrderCreated':
          await tx.insert(orders).values({
            id: event.deciderId,
            restaurantId: event.data.restaurantId,
            dishes: event.data.dishes,
            status: 'created',
          });
          break;
        case 'OrderPrepared':
          await tx
            .update(orders)
            .set({ status: 'prepared', preparedBy: event.data.by })
            .where(sql`${orders.id} = ${event.deciderId}`);
          break;
      }
      await audit(tx, views.orders, event.deciderId, event.offset);
    },
  });
}
