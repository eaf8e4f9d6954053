/**
 * Everything the demo's processes need in the database, safe to run from several processes at once: fstore's
 * migrations (migrate() locks), the demo's own migrations (under a session advisory lock, since drizzle's migrator
 * takes none), the event types, and the two views.
 */
import { migrate } from '@fstore/schema';
import { createEventStore } from '@fstore/store';
import { createPostgresClient } from '@fstore/store/postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate as migrateReadModel } from 'drizzle-orm/postgres-js/migrator';
import { orderEvents } from './domain/order.js';
import { restaurantEvents } from './domain/restaurant.js';

export const views = { restaurants: 'restaurant-menus', orders: 'order-board' } as const;

const readModelMigrations = new URL('../drizzle', import.meta.url).pathname;

export async function setUpDatabase(url: string): Promise<void> {
  const sql = createPostgresClient(url, { max: 1, onnotice: () => {} });
  const locker = createPostgresClient(url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    await locker`SELECT pg_advisory_lock(hashtext('fstore-demo-read-model'))`;
    try {
      await migrateReadModel(drizzle(sql), {
        migrationsFolder: readModelMigrations,
        migrationsTable: '__demo_migrations',
        migrationsSchema: 'drizzle',
      });
    } finally {
      await locker`SELECT pg_advisory_unlock(hashtext('fstore-demo-read-model'))`;
    }
    const db = drizzle(sql);
    await createEventStore(db, restaurantEvents).register();
    await createEventStore(db, orderEvents).register();
  } finally {
    await Promise.all([sql.end(), locker.end()]);
  }
}
