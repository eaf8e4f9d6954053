/**
 * Read-your-writes: wait until a view has handled a writer's event, then read the read model. The position is the
 * stream and offset of the event (a command handler's `position`); view_reached (migration 0014) says where the view
 * stands with that stream, at the cost of one stream's lock row and backlog, whatever the size of the view.
 *
 * The waiters of one database object share one poll: a single statement asks about all of them, every 5 ms while
 * views move and backing off to 50 ms while they do not, and no statement runs while nobody waits. A wake-up on
 * acknowledgement would need NOTIFY from every consumer's commit, which serialises commits (bench A4).
 */
import { type Database, isConnectionError, type StreamPosition } from '@fstore/store';
import { databaseError, queryRows } from '@fstore/store/internal';
import { sql } from 'drizzle-orm';
import { EventParkedError, toViewPositionError, ViewWaitTimeoutError } from './errors.js';

export interface WaitForViewOptions {
  /** How long to wait before ViewWaitTimeoutError. Default 10,000 ms. */
  timeoutMs?: number;
  /** Aborting rejects the wait with the signal's reason. */
  signal?: AbortSignal;
}

/** Where a view stands with one stream, up to one of its events (view_reached). */
export type ViewReached =
  | { state: 'handled' | 'pending' }
  | { state: 'parked'; parkedOffset: number; parkedError: string };

/** A row of view_reached. */
const toReached = (row: Record<string, unknown> | undefined): ViewReached =>
  row?.state === 'parked'
    ? { state: 'parked', parkedOffset: Number(row.parked_offset), parkedError: String(row.parked_error) }
    : { state: row?.state === 'handled' ? 'handled' : 'pending' };

/**
 * `view_reached`: whether `view` has handled the stream up to `position` (every event it projects), is still on
 * its way, or is held by a parked event. Throws ViewPositionError for a view that does not exist, an offset that is
 * not the stream's, or a stream whose decider the view does not subscribe to.
 */
export async function viewReached(
  db: Database,
  view: string,
  position: StreamPosition,
): Promise<ViewReached> {
  try {
    const [row] = await queryRows(
      db,
      sql`SELECT * FROM view_reached(${view}::text, ${position.deciderId}::text, ${position.offset}::bigint)`,
    );
    return toReached(row);
  } catch (error) {
    throw toViewPositionError(error, view, position.deciderId, position.offset);
  }
}

/**
 * Resolves once `view` has handled the stream up to `position`: read the read model then, and it holds the write.
 * Rejects with EventParkedError (naming the parked event) if the view cannot get there, ViewWaitTimeoutError after
 * `timeoutMs`, ViewPositionError as viewReached does, or the signal's reason when aborted. A view being rebuilt
 * meanwhile is waited for until the rebuild has handled the event again. Connection errors are ridden out until the
 * timeout.
 */
export async function waitForView(
  db: Database,
  view: string,
  position: StreamPosition,
  { timeoutMs = 10_000, signal }: WaitForViewOptions = {},
): Promise<void> {
  signal?.throwIfAborted();
  // A connection the pool does not know is gone yet fails the first look: the shared poll rides that out.
  const first = await viewReached(db, view, position).catch((error: unknown): ViewReached => {
    if (isConnectionError(error)) return { state: 'pending' };
    throw error;
  });
  if (settled(first, view, position)) return;
  let poll = polls.get(db);
  if (!poll) {
    poll = new SharedPoll(db);
    polls.set(db, poll);
  }
  const shared = poll;
  await new Promise<void>((resolve, reject) => {
    const waiter: Waiter = {
      view,
      position,
      done: (error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        shared.remove(waiter);
        if (error === undefined) resolve();
        else reject(error);
      },
    };
    const timer = setTimeout(
      () => waiter.done(new ViewWaitTimeoutError(view, position.deciderId, position.offset, timeoutMs)),
      timeoutMs,
    );
    const onAbort = () => waiter.done(signal?.reason ?? new Error('aborted'));
    // Aborted while the first look ran: the event will not fire again.
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    shared.add(waiter);
  });
}

/** True when the wait is over; throws EventParkedError when it cannot end. */
function settled(reached: ViewReached, view: string, position: StreamPosition): boolean {
  if (reached.state === 'parked')
    throw new EventParkedError(view, position.deciderId, reached.parkedOffset, reached.parkedError);
  return reached.state === 'handled';
}

interface Waiter {
  view: string;
  position: StreamPosition;
  /** Ends the wait: resolved without an error. Called once; later calls do nothing (removed by then). */
  done(error?: unknown): void;
}

const polls = new WeakMap<Database, SharedPoll>();
const fastMs = 5;
const slowMs = 50;

/** One poll for every waiter on one database object: one statement a round, none while nobody waits. */
class SharedPoll {
  private readonly waiters = new Set<Waiter>();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private delay = fastMs;

  constructor(private readonly db: Database) {}

  add(waiter: Waiter) {
    this.waiters.add(waiter);
    this.delay = fastMs;
    this.schedule();
  }

  remove(waiter: Waiter) {
    this.waiters.delete(waiter);
    if (this.waiters.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private schedule() {
    if (this.timer || this.polling || this.waiters.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.round();
    }, this.delay);
  }

  private async round() {
    this.polling = true;
    const waiting = [...this.waiters];
    try {
      const asked = JSON.stringify(
        waiting.map((w) => ({ view: w.view, deciderId: w.position.deciderId, offset: w.position.offset })),
      );
      const rows = await queryRows(
        this.db,
        sql`SELECT w.i::int AS i, r.*
            FROM jsonb_array_elements(${asked}::text::jsonb) WITH ORDINALITY AS w(item, i)
                     CROSS JOIN LATERAL view_reached(w.item ->> 'view', w.item ->> 'deciderId',
                                                     (w.item ->> 'offset')::bigint) r`,
      );
      let moved = false;
      for (const row of rows) {
        const waiter = waiting[Number(row.i) - 1];
        if (waiter && this.end(waiter, toReached(row))) moved = true;
      }
      this.delay = moved ? fastMs : Math.min(this.delay * 2, slowMs);
    } catch (error) {
      // A refusal (a view deleted meanwhile, say) belongs to one waiter: ask each on its own. Anything else (the
      // connection went away) is waited out, more slowly.
      if (databaseError(error)?.code === 'P0002' || databaseError(error)?.code === '22023') {
        for (const waiter of waiting) {
          try {
            this.end(waiter, await viewReached(this.db, waiter.view, waiter.position));
          } catch (refusal) {
            waiter.done(refusal);
          }
        }
      } else {
        this.delay = slowMs;
      }
    } finally {
      this.polling = false;
      this.schedule();
    }
  }

  /** Ends the waiter's wait if the view got there (or cannot); true if it did. */
  private end(waiter: Waiter, reached: ViewReached): boolean {
    try {
      if (!settled(reached, waiter.view, waiter.position)) return false;
      waiter.done();
    } catch (parked) {
      waiter.done(parked);
    }
    return true;
  }
}
