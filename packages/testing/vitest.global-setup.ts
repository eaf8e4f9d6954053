import { migrate } from '@fstore/schema';
import { createGlobalSetup } from '@fstore/test-harness/global-setup';
import postgres from 'postgres';

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
