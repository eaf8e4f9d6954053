/**
 * Archiving and retention (SQL: 0022_archiving_and_retention): the owner's maintenance of closed streams, and what a
 * loader can ask of a stream that left the log. Call the maintenance functions with the owner's connection (the role
 * that ran the migrations): least-privilege.sql grants them to neither the application nor the reader role.
 */
import { type ArchivedStream, archivedStreams } from '@fstore/schema';
import { sql } from 'drizzle-orm';
import { type Database, queryRows, rowDecoder } from './database.js';
import { databaseError, StreamNotClosedError, StreamNotHandledError, ValidationError } from './errors.js';

export type { ArchivedStream };

const decodeArchivedStreamRow = rowDecoder<ArchivedStream>(archivedStreams);

/**
 * `get_archived_stream`: whether the stream was archived (and when retention removed it, `removedAt`); undefined
 * when it was not.
 */
export async function getArchivedStream(
  db: Database,
  deciderId: string,
  decider: string,
): Promise<ArchivedStream | undefined> {
  const rows = await queryRows(
    db,
    sql`SELECT * FROM get_archived_stream(${deciderId}::text, ${decider}::text)`,
  );
  return rows.map(decodeArchivedStreamRow)[0];
}

/**
 * `archive_stream`: moves one closed stream, which every view has handled, out of the log into the archive, where
 * it still loads. A stream archived before is returned as it is. Refused, with nothing moved: an open stream
 * (StreamNotClosedError), one a view has not handled yet (StreamNotHandledError), one that does not exist
 * (ValidationError).
 */
export async function archiveStream(
  db: Database,
  decider: string,
  deciderId: string,
): Promise<ArchivedStream> {
  try {
    const rows = await queryRows(db, sql`SELECT * FROM archive_stream(${decider}::text, ${deciderId}::text)`);
    return rows.map(decodeArchivedStreamRow)[0] as ArchivedStream;
  } catch (error) {
    throw toArchiveError(error, decider, deciderId);
  }
}

export interface ArchiveClosedStreamsOptions {
  /** Streams whose final event was appended before this. */
  closedBefore: Date;
  /** Streams per batch: each batch is one short transaction. Default 1000. */
  batchSize?: number;
  /** Called after each batch that moved something, with how many it moved. */
  onBatch?(archived: number): void;
}

/**
 * `archive_closed_streams`, batch after batch until none is left: every stream closed before `closedBefore` that
 * every view has handled leaves the log for the archive. Returns how many streams moved. Streams a view has not
 * handled yet stay, for a later run.
 */
export async function archiveClosedStreams(
  db: Database,
  options: ArchiveClosedStreamsOptions,
): Promise<number> {
  const batchSize = checkBatchSize(options.batchSize);
  if (!(options.closedBefore instanceof Date) || Number.isNaN(options.closedBefore.getTime()))
    throw new ValidationError([{ path: 'closedBefore', message: 'must be a valid Date' }]);
  let total = 0;
  for (;;) {
    const [row] = await queryRows(
      db,
      sql`SELECT archive_closed_streams(${options.closedBefore.toISOString()}::timestamptz, ${batchSize}::int) AS n`,
    );
    const moved = Number(row?.n ?? 0);
    if (moved === 0) return total;
    total += moved;
    options.onBatch?.(moved);
  }
}

export interface RemoveArchivedStreamsOptions {
  /** How long after its closing an archived stream is kept, as a PostgreSQL interval: `'7 years'`, `'90 days'`. */
  olderThan: string;
  /** Streams per batch: each batch is one short transaction, with its audit row. Default 1000. */
  batchSize?: number;
  /** Called after each batch that removed something, with how many streams it removed. */
  onBatch?(removed: number): void;
}

/**
 * Retention: `remove_archived_streams`, batch after batch until none is left. The events of every archived stream
 * closed more than `olderThan` ago are deleted for good; each batch leaves an audit row in `retention_runs`, and the
 * stream's `archived_streams` row stays, with `removedAt` set. Returns how many streams were removed.
 */
export async function removeArchivedStreams(
  db: Database,
  options: RemoveArchivedStreamsOptions,
): Promise<number> {
  const batchSize = checkBatchSize(options.batchSize);
  if (typeof options.olderThan !== 'string' || options.olderThan.trim() === '')
    throw new ValidationError([
      { path: 'olderThan', message: "must be a PostgreSQL interval, such as '7 years'" },
    ]);
  let total = 0;
  for (;;) {
    let removed: number;
    try {
      const [row] = await queryRows(
        db,
        sql`SELECT remove_archived_streams(${options.olderThan}::text::interval, ${batchSize}::int) AS n`,
      );
      removed = Number(row?.n ?? 0);
    } catch (error) {
      const code = databaseError(error)?.code;
      if (code === '22007' || code === '22023' || code === '22008')
        throw new ValidationError(
          [{ path: 'olderThan', message: `must be an interval of zero or more, got ${options.olderThan}` }],
          { cause: error },
        );
      throw error;
    }
    if (removed === 0) return total;
    total += removed;
    options.onBatch?.(removed);
  }
}

function checkBatchSize(batchSize: number | undefined): number {
  const size = batchSize ?? 1000;
  if (!Number.isSafeInteger(size) || size < 1 || size > 2 ** 31 - 1)
    throw new ValidationError([{ path: 'batchSize', message: 'must be a whole number of 1 or more' }]);
  return size;
}

function toArchiveError(error: unknown, decider: string, deciderId: string): unknown {
  const db = databaseError(error);
  switch (db && `${db.code}:${db.constraint ?? ''}`) {
    case '55000:archived_streams_closed':
      return new StreamNotClosedError(decider, deciderId, { cause: error });
    case '55000:archived_streams_handled': {
      const view = parseView(db?.detail);
      return new StreamNotHandledError(decider, deciderId, view, { cause: error });
    }
    case 'P0002:':
      return new ValidationError(
        [{ path: 'deciderId', message: `there is no stream ${deciderId} of ${decider}` }],
        {
          cause: error,
        },
      );
    case '22023:':
      return new ValidationError(
        [{ path: 'deciderId', message: 'decider and deciderId must not be empty' }],
        {
          cause: error,
        },
      );
    default:
      return error;
  }
}

function parseView(detail: string | undefined): string {
  try {
    return String((JSON.parse(detail ?? '{}') as { view?: unknown }).view ?? '');
  } catch {
    return '';
  }
}
