import { PGlite } from '@electric-sql/pglite';
import { afterAll } from 'vitest';
import { migrate } from './migrate.js';
import { describeProjectionSql } from './test-support/projection-sql.suite.js';
import { pgliteClient } from './test-support/sql-client.js';

// PGlite is one session: its listener hears the notifications of its own transactions, as a LISTENing
// connection hears those of every other.
const pg = new PGlite();
afterAll(() => pg.close());

describeProjectionSql(
  'PGlite',
  async () => {
    await migrate(pg);
    return pgliteClient(pg);
  },
  {
    transaction: (fn) => pg.transaction((tx) => fn(pgliteClient(tx as unknown as PGlite))),
    listen: (channel, onNotify) => pg.listen(channel, onNotify),
  },
);
