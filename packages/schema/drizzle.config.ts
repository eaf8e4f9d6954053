import { defineConfig } from 'drizzle-kit';

// fstore keeps its own migrations table: drizzle's migrator decides what is pending from the newest row of its
// table, so sharing one with the host application's migrations would make one of the two sets silently skip.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/tables.ts',
  out: './migrations',
  dbCredentials: { url: process.env.DATABASE_URL ?? '' },
  migrations: { table: '__fstore_migrations', schema: 'fstore' },
});
