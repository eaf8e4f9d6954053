import { defineConfig } from 'drizzle-kit';

// The demo is a host application: its own tables, its own migrations, its own migrations table.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/read-model.ts',
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL ?? '' },
  migrations: { table: '__demo_migrations', schema: 'drizzle' },
});
