export { EmbeddedPostgresError, exitOnEmbeddedPostgresError } from './errors.js';
export {
  type EmbeddedPostgres,
  type EmbeddedPostgresOptions,
  freePort,
  type PostgresServer,
  type PostgresVersion,
  parseVersion,
  serverFromEnvironment,
  startEmbeddedPostgres,
  supportedVersions,
  withDatabase,
} from './server.js';
