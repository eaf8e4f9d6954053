export {
  type FreshDatabase,
  type FreshPostgresDatabase,
  pgliteDatabase,
  postgresDatabase,
} from './databases.js';
export { type DeciderOutcome, type DeciderSpecification, deciderSpec } from './decider-spec.js';
export { type EventOfAny, type ProjectionSpecification, projectionSpec } from './projection-spec.js';
