export { type CreateTestDatabaseOptions, createTestDatabase, type TestDatabase } from './database.js';
export {
  createGlobalSetup,
  type GlobalSetupOptions,
  type TestServerContext,
  withDatabase,
} from './global-setup.js';
export { backendPid, waitUntilBlocked } from './lock-waits.js';
export {
  freePort,
  type RestartableServer,
  startRestartableServer,
  startTestServer,
  supportedEmbeddedVersions,
  type TestServer,
} from './server.js';
