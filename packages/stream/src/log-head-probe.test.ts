/**
 * Wake-ups without NOTIFY, against a real PostgreSQL: the probe of the log's head wakes idle workers long before
 * their polling delay, one probe serves every worker of a process on a database, it stops with the last of them, and
 * a database that fails it does not stop the workers.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, type Database, defineEvents, event, ValidationError } from '@fstore/store';
import { createTestDatabase } from '@fstore/test-harness';
import { budget } from '@fstore/test-harness/budget';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { registerView } from './functions.js';
import { failingProbeIntervalMs, logHeadProbeStats, probeIntervalMs } from './log-head-probe.js';
import type { LogFields, Logger } from './observability.js';
import { createProjection, type Projection, type ProjectionOptions } from './projection.js';

const database = await createTestDatabase();
afterAll(() => database.drop());
const db: Database = drizzle(database.connect({ max: 4 }));

const tasks = defineEvents('Task', { TaskAdded: event<{ title: string }>() });
const store = createEventStore(db, tasks);
beforeAll(() => store.register());

const running: Projection[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((projection) => projection.stop({ timeoutMs: 2000 })));
});

type Options = ProjectionOptions<[typeof tasks]>;
/** A worker on a view of its own, registered now, that records when it handles each event. */
async function worker(workerDb: Database, options: Partial<Options> & { handled?: number[] } = {}) {
  const view = `view-${randomUUID()}`;
  await registerView(db, view);
  const { handled = [], ...rest } = options;
  const projection = createProjection({
    db: workerDb,
    view,
    events: [tasks],
    // Far longer than any wait below: what wakes these workers is the probe, not their own polling.
    pollIntervalMs: 30_000,
    handle() {
      handled.push(Date.now());
    },
    ...rest,
  });
  running.push(projection);
  await projection.start();
  return projection;
}

const append = () =>
  store.append(`task-${randomUUID()}`, [{ type: 'TaskAdded', data: { title: 't' } }], {
    expectedLastEventId: null,
  });
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await pause(20);
  }
}
/** A logger that keeps what it is told. */
function recordingLogger() {
  const lines: { level: string; message: string; fields?: LogFields }[] = [];
  const logger = Object.fromEntries(
    ['debug', 'info', 'warn', 'error'].map((level) => [
      level,
      (message: string, fields?: LogFields) => lines.push({ level, message, fields }),
    ]),
  ) as unknown as Logger;
  return { logger, lines };
}
/** The transactions this database has committed, as the statistics show them (flushed about once a second). */
async function commits(): Promise<number> {
  const [row] = await database.sql<{ n: string }[]>`
    SELECT pg_stat_clear_snapshot(), xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()`;
  return Number(row?.n);
}

describe('the probe of the log head', () => {
  /**
   * Two idle workers, one woken by the probe and one polling only, each on a view of its own: both back off towards
   * their 30 s ceiling (25 ms, 50 ms, ... doubling), so the polling one looks about 3.2 s and 6.4 s after it went
   * idle (later on a busy machine, each poll taking its time). 4.7 s after that, it has looked at 3.2 s and next looks
   * about 1.7 s later. The probed one must have handled an event appended then while the polling one has not: no
   * tight timing. The polling one starts once the probed one is idle, so that its schedule is the one counted from.
   */
  async function probedAndPolling() {
    const probedHandled: number[] = [];
    const pollingHandled: number[] = [];
    const probed = await worker(db, { handled: probedHandled });
    await probed.idle();
    const polling = await worker(db, { handled: pollingHandled, wakeups: 'off' });
    await polling.idle();
    await pause(4700);
    return { probed, polling, pollingHandled };
  }

  test(
    'wakes an idle worker for an appended event long before its polling delay',
    async () => {
      const { probed, polling, pollingHandled } = await probedAndPolling();
      await append();
      await until(() => probed.stats.handled === 1, budget(5000)); // handled and acknowledged
      expect(pollingHandled).toEqual([]);
      // Woken once by the probe, not every 15 ms: a poll at start, a few while it backed off, one for the event.
      expect(probed.stats.polls).toBeLessThan(15);
      await until(() => polling.stats.handled === 1, budget(30_000)); // the polling one gets there on its own
    },
    budget(60_000),
  );

  test(
    'wakes it when a transaction that held the log back ends, though that transaction wrote no event',
    async () => {
      const { probed, pollingHandled } = await probedAndPolling();
      await database.sql.begin(async (tx) => {
        // A transaction with an id, still running: events committed after it started wait for it to end.
        await tx`SELECT pg_current_xact_id()`;
        await append();
        await pause(300);
        expect(probed.stats.handled).toBe(0);
      });
      // The head moves when it ends, though no event was appended then: the probe must see that, not only appends.
      await until(() => probed.stats.handled === 1, budget(5000));
      expect(pollingHandled).toEqual([]);
    },
    budget(60_000),
  );

  test(
    'is one per database for all the workers of a process, sending one statement per interval',
    async () => {
      const shared: Database = drizzle(database.connect({ max: 4 }));
      const workers = await Promise.all(
        Array.from({ length: 10 }, () => worker(shared, { pollIntervalMs: 1000 })),
      );
      expect(logHeadProbeStats(shared)?.subscribers).toBe(10);
      // Idle: every worker has backed off to its 1 s polling delay (25 + 50 + ... + 800 + 1000 ms).
      await pause(3000);
      const before = {
        commits: await commits(),
        probes: logHeadProbeStats(shared)?.probes ?? 0,
        at: Date.now(),
      };
      await pause(5000);
      const seconds = (Date.now() - before.at) / 1000;
      const probesPerSecond = ((logHeadProbeStats(shared)?.probes ?? 0) - before.probes) / seconds;
      const statementsPerSecond = ((await commits()) - before.commits) / seconds;
      console.info(
        `ten idle workers in one process: ${statementsPerSecond.toFixed(0)} statements/s on the database, ` +
          `of which ${probesPerSecond.toFixed(0)} probes/s (one probe every ${probeIntervalMs} ms)`,
      );
      // One probe's worth (at most one per interval; fewer on a busy machine), not ten.
      expect(probesPerSecond).toBeLessThanOrEqual(1000 / probeIntervalMs + 1);
      expect(probesPerSecond).toBeGreaterThan(0);
      // Ten probes would be 667 a second; the workers' own polls at 1 s add a few each.
      expect(statementsPerSecond).toBeLessThan(200);
      expect(workers.every((w) => w.stats.handled === 0)).toBe(true);
    },
    budget(30_000),
  );

  test('stops when the last worker stops, and not before', async () => {
    const client = database.connect({ max: 2, connection: { application_name: 'probed' } });
    const probed: Database = drizzle(client);
    const [first, second] = [await worker(probed), await worker(probed)];
    /** When the workers' connections last started a statement: only the probe sends any while they are idle. */
    const lastStatement = async () => {
      const [row] = await database.sql<{ at: string | null }[]>`
        SELECT max(query_start)::text AS at FROM pg_stat_activity WHERE application_name = 'probed'`;
      return row?.at ?? null;
    };
    await first?.stop();
    expect(logHeadProbeStats(probed)?.subscribers).toBe(1);
    const probes = logHeadProbeStats(probed)?.probes ?? 0;
    await until(async () => (logHeadProbeStats(probed)?.probes ?? 0) > probes + 3, budget(5000));
    await second?.stop();
    expect(logHeadProbeStats(probed)).toBeUndefined();
    await pause(200); // a probe that was in flight at stop() has answered
    const last = await lastStatement();
    await pause(20 * probeIntervalMs);
    expect(await lastStatement()).toBe(last);
  });

  test(
    'a database that fails it does not stop the worker: it warns once and polls on its own',
    async () => {
      // A database without log_head(), as one that is not migrated yet: every probe fails.
      const other = await createTestDatabase();
      try {
        const otherDb: Database = drizzle(other.connect({ max: 4 }));
        await otherDb.execute(sql`DROP FUNCTION log_head()`);
        const otherStore = createEventStore(otherDb, tasks);
        await otherStore.register();
        const { logger, lines } = recordingLogger();
        const handled: number[] = [];
        const view = `view-${randomUUID()}`;
        await registerView(otherDb, view);
        const projection = createProjection({
          db: otherDb,
          view,
          events: [tasks],
          pollIntervalMs: 100,
          logger,
          handle() {
            handled.push(Date.now());
          },
        });
        running.push(projection);
        await projection.start();
        await otherStore.append(`task-${randomUUID()}`, [{ type: 'TaskAdded', data: { title: 't' } }], {
          expectedLastEventId: null,
        });
        await until(() => handled.length === 1, budget(5000));
        await until(
          () => (logHeadProbeStats(otherDb)?.probes ?? 0) >= 3,
          budget(3 * failingProbeIntervalMs + 5000),
        );
        expect(logHeadProbeStats(otherDb)?.failing).toBe(true);
        const warnings = lines.filter((line) => line.level === 'warn');
        expect(warnings).toHaveLength(1);
        expect(warnings[0]?.message).toMatch(/probing the head of the log failed/);
        expect(String(warnings[0]?.fields?.error)).toMatch(/log_head/);
        await projection.stop();
        expect(logHeadProbeStats(otherDb)).toBeUndefined();
      } finally {
        await other.drop();
      }
    },
    budget(30_000),
  );

  test(
    'survives its connections being cut: it (re)connects and still wakes the workers',
    async () => {
      const client = database.connect({ max: 4, connection: { application_name: 'cut' } });
      const cut: Database = drizzle(client);
      const { logger, lines } = recordingLogger();
      const handled: number[] = [];
      await worker(cut, { handled, logger });
      // Twice, as a restarting server fails a pool's connections one after another: still one warning at most.
      for (const _ of [1, 2]) {
        await database.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cut'`;
        await pause(1.5 * failingProbeIntervalMs);
      }
      await append();
      // The worker polls every 30 s: the probe, failing once or reconnecting at once, is what wakes it.
      await until(() => handled.length === 1, budget(3 * failingProbeIntervalMs + 5000));
      expect(
        lines.filter((line) => line.level === 'warn' && /probing/.test(line.message)).length,
      ).toBeLessThanOrEqual(1);
    },
    budget(30_000),
  );
});

describe('the wakeups option', () => {
  test("'off' and 'notify' (true, the older spelling) start no probe; the default does", async () => {
    for (const wakeups of ['off', 'notify', true, false] as const) {
      const own: Database = drizzle(database.connect({ max: 2 }));
      const projection = await worker(own, { wakeups });
      expect(logHeadProbeStats(own)).toBeUndefined();
      await projection.stop();
    }
    const own: Database = drizzle(database.connect({ max: 2 }));
    await worker(own);
    expect(logHeadProbeStats(own)?.subscribers).toBe(1);
  });

  test('anything else is refused before the worker starts', () => {
    expect(() =>
      createProjection({
        db,
        view: 'v',
        events: [tasks],
        wakeups: 'listen' as unknown as 'notify',
        handle() {},
      }),
    ).toThrow(ValidationError);
  });
});
