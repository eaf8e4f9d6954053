import { PGlite } from '@electric-sql/pglite';
import { migrate } from '@fstore/schema';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll } from 'vitest';
import { describeEventStore } from './test-support/event-store.suite.js';

// PGlite is one session: the single-connection specification runs here; races are in concurrency.test.ts.
const pg = new PGlite();
afterAll(() => pg.close());

describeEventStore('PGlite', async () => {
  await migrate(pg);
  let statements = 0;
  const db = drizzle(pg, { logger: { logQuery: () => void statements++ } });
  return { db, statements: () => statements };
});
