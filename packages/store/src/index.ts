/**
 * @fstore/store: the typed event-sourcing API over @fstore/schema's SQL functions.
 * Filled by the store issue; for now it re-exports the row types it will build on.
 */
export type { Decider, Event, NewEvent } from '@fstore/schema';
