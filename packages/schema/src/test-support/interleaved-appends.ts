/**
 * Writers whose commits interleave, one transaction held open while the others commit after it, one rolled back,
 * and a consumer leasing a view all along: what an event store must deliver exactly once whatever order the
 * transactions commit in. Used by the YugabyteDB profile (REPEATABLE READ, cached offsets), where offsets follow
 * neither the order of appends nor that of commits.
 */
import { randomUUID } from 'node:crypto';
import type postgres from 'postgres';

/** Runs `attempt` again after a serialization failure or a deadlock (40001, 40P01): its transaction was rolled back. */
export async function retryingTransient<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if ((code !== '40001' && code !== '40P01') || tries >= 200) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(50, 2 ** tries)));
    }
  }
}

export interface InterleavingOptions {
  /** Opens a new single connection under the profile. */
  connect: () => postgres.Sql;
  /** A decider that may publish `happened`, and a view registered before this runs. */
  decider: string;
  view: string;
  /** How long to wait for everything to arrive before giving up. */
  deadlineMs: number;
  writers?: number;
  streamsPerWriter?: number;
  rounds?: number;
}

export interface Interleaving {
  /** Every committed event's offset, by stream, in stream order. */
  appended: Map<string, number[]>;
  /** Every delivered offset, in delivery order, with its stream. */
  delivered: { stream: string; offset: number }[];
  /** The event of the transaction held open while the others committed. */
  late: { stream: string; offset: number };
  /** Offsets delivered before that transaction committed. */
  deliveredBeforeLateCommit: number[];
  /** The stream of the rolled-back transaction, whose event must never arrive. */
  rolledBackStream: string;
  /** What one more lease returned once everything had been acknowledged. */
  leasedAfterwards: number;
}

type Row = { lease_id: string; decider_id: string; offset: string };

/** One consumer step: lease up to 4 streams of `view` (3 events each) and acknowledge them, in one transaction. */
export function leaseAndAcknowledge(consumer: postgres.Sql, view: string) {
  return retryingTransient(() =>
    consumer.begin(async (tx) => {
      const rows = await tx<
        Row[]
      >`SELECT lease_id, decider_id, "offset" FROM lease_events(${view}, 4, 3, 30)`;
      const lastByStream = new Map<string, Row>();
      for (const row of rows) lastByStream.set(row.decider_id, row);
      for (const row of lastByStream.values()) {
        await tx`SELECT 1 FROM ack_events(${view}, ${row.decider_id}, ${row.lease_id}::uuid, ${row.offset}::bigint)`;
      }
      return rows.map((row) => ({ stream: row.decider_id, offset: Number(row.offset) }));
    }),
  );
}

/**
 * Writers append (REPEATABLE READ, retried) while `register` registers a view that reads the whole log; then a
 * consumer reads the view until every event of the writers has arrived or the deadline passes. Returns what they
 * appended and what of it was delivered, by stream, in order.
 */
export async function registerWhileWritersAppend(options: {
  connect: () => postgres.Sql;
  decider: string;
  view: string;
  register: (sql: postgres.Sql) => Promise<unknown>;
  deadlineMs: number;
}): Promise<{ appended: Map<string, number[]>; delivered: Map<string, number[]> }> {
  const { connect, decider, view, register, deadlineMs } = options;
  const tag = randomUUID().slice(0, 8);
  const appended = new Map<string, number[]>();
  let registered = false;
  const writing = Promise.all(
    Array.from({ length: 4 }, async (_, writer) => {
      const sql = connect();
      const stream = `reg-w${writer}-${tag}`;
      let previous: string | null = null;
      // Until the registration is done, and a few appends more after it.
      for (let after = 0; after < 5; after += registered ? 1 : 0) {
        const rows = await retryingTransient(
          () => sql<{ event_id: string; offset: string }[]>`
            SELECT event_id, "offset" FROM append_events(${decider}, ${stream}, ${previous}, ${randomUUID()},
              ${JSON.stringify([{ event: 'happened', event_id: randomUUID(), data: {} }])}::text::jsonb)`,
        );
        previous = rows.at(-1)?.event_id ?? previous;
        appended.set(stream, [...(appended.get(stream) ?? []), ...rows.map((row) => Number(row.offset))]);
      }
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  await register(connect());
  registered = true;
  await writing;
  const consumer = connect();
  const delivered = new Map<string, number[]>();
  const total = () => [...appended.values()].flat().length;
  const deadline = Date.now() + deadlineMs;
  let count = 0;
  while (count < total() && Date.now() < deadline) {
    const got = await leaseAndAcknowledge(consumer, view);
    // The view reads the whole log: events of other runs in the database arrive too, and are not counted.
    const ours = got.filter(({ stream }) => appended.has(stream));
    for (const { stream, offset } of ours) delivered.set(stream, [...(delivered.get(stream) ?? []), offset]);
    count += ours.length;
    if (got.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return { appended, delivered };
}

export async function deliverWhileWritersInterleave(options: InterleavingOptions): Promise<Interleaving> {
  const { connect, decider, view, deadlineMs } = options;
  const writers = options.writers ?? 4;
  const streamsPerWriter = options.streamsPerWriter ?? 3;
  const rounds = options.rounds ?? 6;
  const tag = randomUUID().slice(0, 8);
  const appended = new Map<string, number[]>();
  const delivered: Interleaving['delivered'] = [];
  const record = (stream: string, offsets: number[]) =>
    appended.set(stream, [...(appended.get(stream) ?? []), ...offsets]);
  const appendSql = (
    sql: postgres.Sql | postgres.TransactionSql,
    stream: string,
    previous: string | null,
    n: number,
  ) =>
    sql<{ event_id: string; offset: string }[]>`
      SELECT event_id, "offset" FROM append_events(${decider}, ${stream}, ${previous}, ${randomUUID()},
        ${JSON.stringify(Array.from({ length: n }, () => ({ event: 'happened', event_id: randomUUID(), data: {} })))}::text::jsonb)`;

  // The transaction held open starts first: its connection takes the first block of offsets, so its event gets an
  // offset below everything the writers commit while it waits.
  const lateSql = connect();
  const late = { stream: `late-${tag}`, offset: 0 };
  let commitLate: () => void = () => {};
  const lateGate = new Promise<void>((resolve) => {
    commitLate = resolve;
  });
  let lateStarted: () => void = () => {};
  const lateBegun = new Promise<void>((resolve) => {
    lateStarted = resolve;
  });
  const lateTransaction = lateSql.begin(async (tx) => {
    const [row] = await appendSql(tx, late.stream, null, 1);
    late.offset = Number(row?.offset);
    lateStarted();
    await lateGate;
  });
  // (If its append fails, the race rejects instead of waiting for ever.)
  await Promise.race([lateBegun, lateTransaction]);

  // A transaction that appends and rolls back: nothing of it may arrive.
  const rolledBackStream = `rolled-back-${tag}`;
  await connect()
    .begin(async (tx) => {
      await appendSql(tx, rolledBackStream, null, 2);
      throw new Error('roll back');
    })
    .catch(() => {});

  let writersDone = false;
  const writing = Promise.all(
    Array.from({ length: writers }, async (_, writer) => {
      const sql = connect();
      const streams = Array.from({ length: streamsPerWriter }, (_, index) => `w${writer}-s${index}-${tag}`);
      const last = new Map<string, string | null>(streams.map((stream) => [stream, null]));
      for (let round = 0; round < rounds; round++) {
        for (const [index, stream] of streams.entries()) {
          // One to three events a transaction, the streams of a writer in turn: commits of the writers interleave.
          const rows = await retryingTransient(() =>
            appendSql(sql, stream, last.get(stream) ?? null, 1 + ((round + index) % 3)),
          );
          last.set(stream, rows.at(-1)?.event_id ?? null);
          record(
            stream,
            rows.map((row) => Number(row.offset)),
          );
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        }
      }
    }),
  ).then(() => {
    writersDone = true;
  });

  const consumer = connect();
  const deadline = Date.now() + deadlineMs;
  const expected = () => [...appended.values()].reduce((sum, offsets) => sum + offsets.length, 0);
  let lateCommitted = false;
  let idlePollsSinceWritersDone = 0;
  let deliveredBeforeLateCommit: number[] = [];
  const lease = () => leaseAndAcknowledge(consumer, view);
  for (;;) {
    if (Date.now() > deadline) break;
    const got = await lease();
    delivered.push(...got);
    if (!lateCommitted && writersDone) {
      idlePollsSinceWritersDone = got.length === 0 ? idlePollsSinceWritersDone + 1 : 0;
      // Commit the late transaction once the others have all arrived, or once the consumer has polled a while
      // without getting anything more (a frontier waits for it).
      if (delivered.length === expected() || idlePollsSinceWritersDone >= 20) {
        deliveredBeforeLateCommit = delivered.map((event) => event.offset);
        commitLate();
        await lateTransaction;
        record(late.stream, [late.offset]);
        lateCommitted = true;
        continue;
      }
    }
    if (lateCommitted && delivered.length >= expected()) break;
    if (got.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  commitLate();
  await lateTransaction;
  await writing;
  const leasedAfterwards = (await lease()).length;
  return { appended, delivered, late, deliveredBeforeLateCommit, rolledBackStream, leasedAfterwards };
}
