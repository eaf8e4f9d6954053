import { createGlobalSetup } from '@fstore/test-harness/global-setup';

// The demo migrates its databases itself (fstore's migrations and its own read model), as it does when it runs.
export default createGlobalSetup();
