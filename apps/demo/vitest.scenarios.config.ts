import { fstoreVitestConfig } from '@fstore/test-harness/vitest-config';

// The slow scenarios (the database crashed, answers lost under the decider process): `pnpm test:scenarios`, which
// CI runs too.
export default fstoreVitestConfig({ globalSetup: './vitest.global-setup.ts', suite: 'scenarios' });
