import { fstoreVitestConfig } from '@fstore/testing/vitest-config';

export default fstoreVitestConfig({ globalSetup: './vitest.global-setup.ts' });
