export { freePort, withDatabase } from '@fstore/embedded-postgres';
export { type CuttingProxy, startCuttingProxy } from './cutting-proxy.js';
export { type CreateTestDatabaseOptions, createTestDatabase, type TestDatabase } from './database.js';
export { createGlobalSetup, type GlobalSetupOptions, type TestServerContext } from './global-setup.js';
export { backendPid, waitUntilBlocked } from './lock-waits.js';
export {
  type RestartableServer,
  startRestartableServer,
  startTestServer,
  type TestServer,
} from './server.js';
export { tablesHolding } from './tables-holding.js';
