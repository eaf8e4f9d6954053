/** The projection worker; its parts are in projection/ (worker.ts is where to start reading). */
export type {
  HandlerContext,
  ProjectedEvent,
  Projection,
  ProjectionOptions,
  ProjectionStats,
  Transaction,
} from './projection/types.js';
export { createProjection } from './projection/worker.js';
