import { fstoreVitestConfig } from '@fstore/test-harness/vitest-config';

// The slow scenarios (real processes killed, the database restarted): `pnpm test:scenarios`, which CI runs too.
export default fstoreVitestConfig({ globalSetup: './vitest.global-setup.ts', suite: 'scenarios' });
