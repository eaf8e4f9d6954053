import { fstoreVitestConfig } from '@fstore/test-harness/vitest-config';

// No shared server here: each test starts the embedded PostgreSQL it is about, which takes longer than most tests.
export default fstoreVitestConfig({ testBudgetMs: 120_000 });
