import { createGlobalSetup } from '@fstore/test-harness/global-setup';

// The hosts migrate their own databases (created empty) with drizzle-kit, as a host's CI would.
export default createGlobalSetup();
