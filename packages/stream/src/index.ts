/**
 * @fstore/stream: views and projection workers over @fstore/schema's streaming functions.
 * Filled by the stream issue; for now it re-exports the row types it will build on.
 */
export type { Lock, View } from '@fstore/schema';
