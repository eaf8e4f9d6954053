/**
 * Stress: 16 producers and, on each of 2 views, 4 worker processes, for FSTORE_STRESS_SECONDS (default 8 s; the
 * long run is `FSTORE_STRESS_SECONDS=60 pnpm test:scenarios`). turbo hands a task only the variables turbo.json
 * names (`FSTORE_TEST_*` among them), so FSTORE_TEST_STRESS_SECONDS works too, whatever turbo.json says.
 *
 * Producers run Counter commands (increment, or close: a final event) on a mix of hot streams, which all of them
 * hammer at once, and cold ones, picked at random. A hot stream is closed by whichever increment finds it at its
 * close count (5 to 20); cold ones now and then by an explicit close. Half go through the store's command handler (load, decide, append
 * after the last event seen; it reloads and decides again on a conflict), half use the store directly with the
 * expected last event (loadLast, append, retry on OptimisticConcurrencyError). Hot streams are closed while the
 * others race on them: the losers get StreamClosedError (or, having lost the race on the previous event, decide
 * again and find the stream closed), and the producers move on to the hot stream's next generation.
 *
 * At the end: every event a producer saw appended is in the log, nothing else is; each stream's chain is whole,
 * unforked, and ends at its final event if it has one; every Incremented event's n is its position in the stream
 * (every decision was made on the latest state); there were conflicts, retries and closes; and both views hold
 * every event once, in stream order, with a fold equal to the log's (checkInvariants).
 */
import {
  createCommandHandler,
  type Decider,
  type EventOf,
  OptimisticConcurrencyError,
  StreamClosedError,
} from '@fstore/store';
import { expect, test } from 'vitest';
import { checkInvariants, cleanReport, waitForViews } from './test-support/invariants.js';
import { stopWorker, workerLogs } from './test-support/process-control.js';
import { type counterEvents, sleep } from './test-support/scenario-fixtures.js';
import { useScenarioHarness } from './test-support/scenario-harness.js';

const harness = useScenarioHarness();

/** How long the producers run, in seconds: FSTORE_STRESS_SECONDS, else FSTORE_TEST_STRESS_SECONDS, else 8. */
const seconds = Number(process.env.FSTORE_STRESS_SECONDS ?? process.env.FSTORE_TEST_STRESS_SECONDS ?? 8);
if (!Number.isFinite(seconds) || seconds <= 0) {
  throw new Error(`FSTORE_STRESS_SECONDS=${process.env.FSTORE_STRESS_SECONDS} is not a positive number`);
}

type CounterEvent = EventOf<typeof counterEvents>;
/** Increment (and close instead, once the counter has reached `closeAt`), or close. */
type CounterCommand = { kind: 'increment'; closeAt?: number } | { kind: 'close' };
interface CounterState {
  count: number;
  closed: boolean;
}

const counter: Decider<CounterCommand, CounterState, CounterEvent> = {
  initialState: { count: 0, closed: false },
  evolve: (state, event) =>
    event.type === 'Incremented' ? { count: state.count + 1, closed: false } : { ...state, closed: true },
  decide: (command, state): CounterEvent[] => {
    if (state.closed) return [];
    const close = command.kind === 'close' || state.count >= (command.closeAt ?? Number.POSITIVE_INFINITY);
    return close
      ? [{ type: 'Closed', data: { count: state.count } }]
      : [{ type: 'Incremented', data: { n: state.count + 1 } }];
  },
};

const producers = 16;
const hotSlots = 4;
const coldStreams = 64;
const viewNames = ['stress-a', 'stress-b'];
const workersPerView = 4;

interface Tally {
  commands: number;
  appended: number;
  /** Appends refused because another writer got there first (each followed by a reload and a new decision). */
  conflicts: number;
  /** Commands the handler ran more than once (attempts > 1). */
  retriedCommands: number;
  /** Command handlers that gave up after maxAttempts conflicts in a row. */
  gaveUp: number;
  /** Appends refused with StreamClosedError: the stream was closed after the writer loaded it. */
  streamClosedErrors: number;
  /** Commands that found the stream already closed and decided nothing. */
  foundClosed: number;
  closes: number;
}

test(
  `stress: ${producers} producers racing on hot and cold streams, closes among them, ${workersPerView} workers on each of ${viewNames.length} views, for ${seconds} s`,
  async () => {
    const { database, store } = await harness.setUp({ storePoolSize: producers + 4 });
    for (const view of viewNames) {
      await database.sql`SELECT * FROM register_view(${view}, 'epoch'::timestamp, 5)`;
    }
    const workers = viewNames.flatMap((view, v) =>
      Array.from({ length: workersPerView }, (_, index) =>
        harness.worker({
          url: database.url,
          view,
          name: `${'ab'[v]}${index + 1}`,
          concurrency: 4,
          batchSize: 50,
          leaseSeconds: 5,
        }),
      ),
    );
    await Promise.all(workers.map((worker) => worker.waitForLine(/^ready$/, { timeoutMs: 60_000 })));

    const handle = createCommandHandler(store, counter, { maxAttempts: 20, backoffMs: 2, maxBackoffMs: 50 });
    const generation = Array.from({ length: hotSlots }, () => 0);
    const tally: Tally = {
      commands: 0,
      appended: 0,
      conflicts: 0,
      retriedCommands: 0,
      gaveUp: 0,
      streamClosedErrors: 0,
      foundClosed: 0,
      closes: 0,
    };
    /** Every event a producer saw appended: id -> stream and offset. */
    const appended = new Map<string, { deciderId: string; offset: number }>();
    const record = (
      events: readonly { eventId: string; deciderId: string; offset: number; final: boolean }[],
    ) => {
      for (const event of events) {
        appended.set(event.eventId, { deciderId: event.deciderId, offset: event.offset });
        if (event.final) tally.closes++;
      }
      tally.appended += events.length;
    };

    /** A stream for the next command: hot (shared by everyone, the current generation of a slot) or cold. */
    const pick = () => {
      if (Math.random() < 0.6) {
        const slot = Math.floor(Math.random() * hotSlots);
        const current = generation[slot] ?? 0;
        return {
          deciderId: `hot-${slot}-${current}`,
          // Closed: the next command on this slot goes to a new stream.
          closed: () => {
            if (generation[slot] === current) generation[slot] = current + 1;
          },
          // Each hot stream is closed once it counts 5 to 20, whoever decides it then, while the others race on it.
          closeAt: 5 + ((slot * 7 + current * 5) % 16),
          closeChance: 0,
        };
      }
      return {
        deciderId: `cold-${String(Math.floor(Math.random() * coldStreams)).padStart(2, '0')}`,
        closed: () => {},
        closeAt: undefined,
        closeChance: 0.01,
      };
    };

    /** Through the command handler. */
    async function viaHandler(deciderId: string, command: CounterCommand, closed: () => void) {
      try {
        const result = await handle(deciderId, command);
        if (result.attempts > 1) {
          tally.retriedCommands++;
          tally.conflicts += result.attempts - 1;
        }
        record(result.events);
        if (result.events.length === 0 && result.state.closed) tally.foundClosed++;
        if (result.state.closed) closed();
      } catch (error) {
        if (error instanceof StreamClosedError) {
          tally.streamClosedErrors++;
          closed();
        } else if (error instanceof OptimisticConcurrencyError) {
          tally.gaveUp++;
        } else {
          throw error;
        }
      }
    }

    /** With the store directly: the last event, a decision, an append after it; again on a conflict. */
    async function direct(deciderId: string, command: CounterCommand, closed: () => void) {
      for (let attempt = 1; attempt <= 50; attempt++) {
        const last = await store.loadLast(deciderId);
        const state: CounterState = !last
          ? counter.initialState
          : last.type === 'Incremented'
            ? { count: last.data.n, closed: false }
            : { count: last.data.count, closed: true };
        const decided = counter.decide(command, state) as CounterEvent[];
        if (decided.length === 0) {
          tally.foundClosed++;
          closed();
          return;
        }
        try {
          record(await store.append(deciderId, decided, { expectedLastEventId: last?.eventId ?? null }));
          if (attempt > 1) tally.retriedCommands++;
          return;
        } catch (error) {
          if (error instanceof StreamClosedError) {
            tally.streamClosedErrors++;
            closed();
            return;
          }
          if (!(error instanceof OptimisticConcurrencyError)) throw error;
          tally.conflicts++;
          await sleep(Math.random() * Math.min(50, 2 * 2 ** attempt));
        }
      }
      tally.gaveUp++;
    }

    const startedAt = Date.now();
    const end = startedAt + seconds * 1000;
    await Promise.all(
      Array.from({ length: producers }, async (_, index) => {
        const run = index % 2 === 0 ? viaHandler : direct;
        while (Date.now() < end) {
          const target = pick();
          const command: CounterCommand =
            Math.random() < target.closeChance
              ? { kind: 'close' }
              : target.closeAt === undefined
                ? { kind: 'increment' }
                : { kind: 'increment', closeAt: target.closeAt };
          tally.commands++;
          await run(target.deciderId, command, target.closed);
        }
      }),
    );
    const producedAt = Date.now();
    await waitForViews(database.sql, viewNames, {
      timeoutMs: 60_000 + seconds * 2_000,
      explain: () => workerLogs(workers),
    });
    const caughtUpAt = Date.now();
    const exits = await Promise.all(
      workers.map(async (worker) => ({ name: worker.name, ...(await stopWorker(worker)) })),
    );
    expect(
      exits.filter((exit) => exit.code !== 0),
      workerLogs(workers),
    ).toEqual([]);

    // What the producers saw appended is the log, per stream in offset order (and nothing else is in it).
    const acknowledged = new Map<string, string[]>();
    for (const [eventId, { deciderId }] of [...appended].sort((a, b) => a[1].offset - b[1].offset)) {
      const ids = acknowledged.get(deciderId) ?? [];
      ids.push(eventId);
      acknowledged.set(deciderId, ids);
    }
    const [counts] = await database.sql<{ events: number; streams: number; closed: number }[]>`
    SELECT count(*)::int AS events, count(DISTINCT decider_id)::int AS streams,
           count(*) FILTER (WHERE final)::int AS closed
    FROM events`;
    const handled = Object.fromEntries(
      workers.map((worker) => [
        worker.name,
        worker.lines.filter((line) => line.startsWith('handled ')).length,
      ]),
    );
    console.info(
      `stress (${seconds} s): ${JSON.stringify(tally)}; ${counts?.events} events in ${counts?.streams} streams ` +
        `(${Math.round((counts?.events ?? 0) / ((producedAt - startedAt) / 1000))} events/s appended); ` +
        `views caught up ${caughtUpAt - producedAt} ms after the producers stopped; handled per worker ${JSON.stringify(handled)}`,
    );
    expect(counts?.events).toBe(appended.size);
    expect(tally.appended).toBe(appended.size);
    expect(await checkInvariants(database.sql, viewNames, acknowledged)).toEqual(cleanReport(viewNames));
    // Every decision was made on the stream's latest state: n is the event's position in its stream.
    const lostUpdates = await database.sql`
    SELECT decider_id, "offset", n, position
    FROM (SELECT decider_id, "offset", event, (data ->> 'n')::int AS n,
                 row_number() OVER (PARTITION BY decider_id ORDER BY "offset") AS position
          FROM events) numbered
    WHERE event = 'Incremented' AND n <> position
    LIMIT 10`;
    expect(lostUpdates).toEqual([]);
    expect(tally.conflicts).toBeGreaterThan(0);
    expect(tally.retriedCommands).toBeGreaterThan(0);
    expect(tally.closes).toBeGreaterThan(0);
    expect(counts?.closed).toBe(tally.closes);
    expect(tally.streamClosedErrors + tally.foundClosed).toBeGreaterThan(0);
  },
  (seconds + 150) * 1000,
);
