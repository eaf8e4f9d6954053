import { type DeciderEventType, deciders, type Event, events } from '@fstore/schema';
import { Column, getTableColumns, type SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT, PgTable } from 'drizzle-orm/pg-core';

/**
 * A Drizzle database or transaction, on any PostgreSQL driver: postgres.js (`drizzle-orm/postgres-js`) by default,
 * PGlite (`drizzle-orm/pglite`) in process.
 */
// biome-ignore lint/suspicious/noExplicitAny: the host application's schema type is none of our business.
export type Database = PgDatabase<PgQueryResultHKT, any>;

/** Runs a raw statement and returns its rows, whichever driver the database uses. */
export async function queryRows(db: Database, query: SQL): Promise<Record<string, unknown>[]> {
  const result = (await db.execute(query)) as unknown;
  return (Array.isArray(result) ? result : (result as { rows: Record<string, unknown>[] }).rows) as Record<
    string,
    unknown
  >[];
}

/**
 * Decodes a raw row of a table (as the SQL functions return them) the way a Drizzle select would: column names to
 * field names, int8 to numbers, timestamps to Dates. jsonb is left as the driver parsed it. Columns whose Drizzle
 * mapping is the identity (text, uuid, boolean) are copied without a call: a worker decodes every event it handles.
 */
export function rowDecoder<TRow>(table: PgTable) {
  const columns = Object.entries(getTableColumns(table)).map(([field, column]) => ({
    field,
    name: column.name,
    map:
      column.dataType === 'json' || column.mapFromDriverValue === Column.prototype.mapFromDriverValue
        ? undefined
        : (value: unknown) => column.mapFromDriverValue(value),
  }));
  return (raw: Record<string, unknown>): TRow => {
    const row: Record<string, unknown> = {};
    for (const { field, name, map } of columns) {
      const value = raw[name];
      row[field] =
        value === null || value === undefined
          ? null
          : map === undefined || value instanceof Date
            ? value
            : map(value);
    }
    return row as TRow;
  };
}

export const decodeEventRow = rowDecoder<Event>(events);
export const decodeDeciderRow = rowDecoder<DeciderEventType>(deciders);
