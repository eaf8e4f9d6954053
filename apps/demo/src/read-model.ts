/**
 * The demo's read models, declared in Drizzle in schema `demo`, migrated by the demo's own drizzle-kit migrations
 * (in `drizzle/`, recorded in drizzle.__demo_migrations: never in fstore's table).
 */
import { bigint, bigserial, integer, jsonb, pgSchema, text } from 'drizzle-orm/pg-core';

export const demo = pgSchema('demo');

/** View `restaurant-menus`: each restaurant, its menu, and how many orders it took. */
export const restaurants = demo.table('restaurants', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  menu: jsonb('menu').$type<{ id: string; name: string; price: number }[]>().notNull(),
  ordersPlaced: integer('orders_placed').notNull().default(0),
});

/** View `order-board`: each order and where it is. */
export const orders = demo.table('orders', {
  id: text('id').primaryKey(),
  restaurantId: text('restaurant_id').notNull(),
  dishes: jsonb('dishes').$type<string[]>().notNull(),
  status: text('status').$type<'created' | 'prepared'>().notNull(),
  preparedBy: text('prepared_by'),
});

/**
 * Every event each view handled, in the order it handled them, written in the handler's transaction: the demo's
 * final check reads it to prove each event was projected exactly once and in stream order.
 */
export const projectedEvents = demo.table('projected_events', {
  seq: bigserial('seq', { mode: 'number' }).primaryKey(),
  view: text('view').notNull(),
  deciderId: text('decider_id').notNull(),
  offset: bigint('offset', { mode: 'number' }).notNull(),
});
