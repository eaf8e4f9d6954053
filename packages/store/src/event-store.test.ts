import { createTestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll } from 'vitest';
import { describeEventStore } from './test-support/event-store.suite.js';

const database = await createTestDatabase();
afterAll(() => database.drop());

describeEventStore('PostgreSQL via postgres.js', async () => {
  let statements = 0;
  const db = drizzle(database.connect(), { logger: { logQuery: () => void statements++ } });
  return { db, statements: () => statements };
});
