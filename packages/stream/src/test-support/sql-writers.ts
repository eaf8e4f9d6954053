/**
 * Writers that hold their own transactions (BEGIN … COMMIT on a reserved connection) and append Counter events with
 * append_event, so that a scenario decides when each transaction takes its id and when it commits. The ledger
 * records, per stream, the events of committed transactions only, in the shape the invariants take.
 */
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';
import { counterEvents } from './scenario-fixtures.js';

export class StreamLedger {
  /** Per stream, the ids of the committed events, in order (checkInvariants' `acknowledged`). */
  readonly acknowledged = new Map<string, string[]>();
  /** Events appended in a transaction that has not committed yet, per stream. */
  private readonly pending = new Map<postgres.ReservedSql, Map<string, string[]>>();

  /** The stream's last committed event (the previous_id of the next append), or null. */
  last(stream: string): string | null {
    return this.acknowledged.get(stream)?.at(-1) ?? null;
  }

  /** Appends one Incremented event in `tx`'s open transaction, after the stream's last event (committed or not). */
  async append(tx: postgres.ReservedSql, stream: string): Promise<{ offset: number; transactionId: bigint }> {
    const mine = this.pending.get(tx) ?? new Map<string, string[]>();
    this.pending.set(tx, mine);
    const appended = mine.get(stream) ?? [];
    const previous = appended.at(-1) ?? this.last(stream);
    const n = (this.acknowledged.get(stream)?.length ?? 0) + appended.length + 1;
    const eventId = randomUUID();
    const [row] = await tx<{ offset: string; transaction_id: string }[]>`
      SELECT "offset", transaction_id::text FROM append_event('Incremented', ${eventId}, ${counterEvents.decider},
        ${stream}, ${tx.json({ n })}, ${randomUUID()}, ${previous})`;
    appended.push(eventId);
    mine.set(stream, appended);
    return { offset: Number(row?.offset), transactionId: BigInt(row?.transaction_id ?? '0') };
  }

  /** Commits `tx`'s transaction and records its events. */
  async commit(tx: postgres.ReservedSql): Promise<void> {
    await tx`COMMIT`;
    for (const [stream, ids] of this.pending.get(tx) ?? []) {
      this.acknowledged.set(stream, [...(this.acknowledged.get(stream) ?? []), ...ids]);
    }
    this.pending.delete(tx);
  }

  /** Rolls `tx`'s transaction back: its events never happened. */
  async rollback(tx: postgres.ReservedSql): Promise<void> {
    this.pending.delete(tx);
    await tx`ROLLBACK`;
  }

  /** Forgets `tx`'s transaction, whose connection is gone (the server rolled it back, or never saw it end). */
  forget(tx: postgres.ReservedSql): void {
    this.pending.delete(tx);
  }
}

/** The transaction's id, taken now if it has none yet (as any write would take it). */
export async function takeTransactionId(tx: postgres.ReservedSql): Promise<bigint> {
  const [row] = await tx<{ xid: string }[]>`SELECT pg_current_xact_id()::text AS xid`;
  return BigInt(row?.xid ?? '0');
}

/** How many events of the log the view's read model holds (rows of `projected`, duplicates included). */
export async function projectedCount(sql: postgres.Sql, view: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM projected WHERE view = ${view}`;
  return row?.n ?? 0;
}
