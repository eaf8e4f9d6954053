import { fstoreVitestConfig } from '@fstore/test-harness/vitest-config';

// The slow scenarios (work at a scale that takes long on any machine): `pnpm test:scenarios`, which CI runs too.
export default fstoreVitestConfig({ globalSetup: './vitest.global-setup.ts', suite: 'scenarios' });
