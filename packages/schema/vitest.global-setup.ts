import { createGlobalSetup } from '@fstore/test-harness/global-setup';
import postgres from 'postgres';
import { migrate } from './src/migrate.js';

export default createGlobalSetup({
  async prepareTemplate(url) {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(sql);
    } finally {
      await sql.end();
    }
  },
});
