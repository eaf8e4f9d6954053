import { fstoreVitestConfig } from '@fstore/test-harness/vitest-config';

export default fstoreVitestConfig({ globalSetup: './vitest.global-setup.ts' });
