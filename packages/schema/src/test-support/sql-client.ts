/**
 * The SQL API specification runs on two drivers: postgres.js (a real server) and PGlite (in process). This is the
 * little they need in common: run one statement with parameters and get rows back, and see a failure as SQLSTATE,
 * constraint name and message. int8 columns come back as numbers from both.
 */
import type { PGlite } from '@electric-sql/pglite';
import type postgres from 'postgres';

export type Row = Record<string, unknown>;

export interface SqlFailure {
  code: string;
  constraint: string | undefined;
  message: string;
  detail?: string | undefined;
}

export interface SqlClient {
  query<T extends Row = Row>(text: string, parameters?: unknown[]): Promise<T[]>;
}

export function postgresJsClient(sql: postgres.Sql): SqlClient {
  return {
    async query<T extends Row>(text: string, parameters: unknown[] = []) {
      const rows = await sql.unsafe(text, parameters as postgres.ParameterOrJSON<never>[]);
      return rows.map((row) => normaliseInt8(row as Row)) as T[];
    },
  };
}

export function pgliteClient(pg: PGlite): SqlClient {
  return {
    async query<T extends Row>(text: string, parameters: unknown[] = []) {
      return (await pg.query<T>(text, parameters)).rows;
    },
  };
}

// postgres.js returns int8 as strings (they may exceed 2^53); the specification compares offsets as numbers.
const int8Columns = new Set([
  'offset',
  'last_offset',
  'event_version',
  'lock_timeout_s',
  'pooling_delay_s',
  'pooling_delay_ms',
  'count',
]);
function normaliseInt8(row: Row): Row {
  const out: Row = {};
  for (const [key, value] of Object.entries(row)) {
    out[key] = int8Columns.has(key) && typeof value === 'string' ? Number(value) : value;
  }
  return out;
}

/** Runs `fn`, expects it to fail, and returns the failure's SQLSTATE, constraint and message, from either driver. */
export async function failureOf(fn: () => Promise<unknown>): Promise<SqlFailure> {
  try {
    await fn();
  } catch (error) {
    const e = error as {
      code?: string;
      constraint_name?: string;
      constraint?: string;
      message: string;
      detail?: string;
    };
    const failure: SqlFailure = {
      code: e.code ?? '',
      constraint: e.constraint_name ?? e.constraint ?? undefined,
      message: e.message,
    };
    if (e.detail) failure.detail = e.detail;
    return failure;
  }
  throw new Error('expected the statement to fail, and it succeeded');
}
