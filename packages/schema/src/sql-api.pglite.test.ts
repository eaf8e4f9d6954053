import { PGlite } from '@electric-sql/pglite';
import { afterAll } from 'vitest';
import { migrate } from './migrate.js';
import { describeSqlApi } from './test-support/sql-api.suite.js';
import { pgliteClient } from './test-support/sql-client.js';

// PGlite is one session: everything here needs only one connection. The races are in concurrency.test.ts.
const pg = new PGlite();
afterAll(() => pg.close());

describeSqlApi('PGlite', async () => {
  await migrate(pg);
  return pgliteClient(pg);
});
