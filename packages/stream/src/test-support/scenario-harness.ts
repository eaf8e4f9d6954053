/**
 * The hooks a scenario file (faults.scenario.ts, stress.scenario.ts) shares: a database of each test's own with the
 * read models and a Counter store, the worker processes the test starts (SIGKILLed after it if still alive, their
 * logs printed when it fails), and whatever else it asks to close. Kept apart from the modules worker processes
 * import, which must not import vitest.
 */
import { createEventStore, type EventStore } from '@fstore/store';
import { createTestDatabase, type TestDatabase } from '@fstore/test-harness';
import { drizzle } from 'drizzle-orm/postgres-js';
import type postgres from 'postgres';
import { afterEach, beforeEach, onTestFailed } from 'vitest';
import { startWorker, type WorkerOptions, type WorkerProcess, workerLogs } from './process-control.js';
import { counterEvents, createReadModel } from './scenario-fixtures.js';

export interface ScenarioDatabase {
  database: TestDatabase;
  /** A Counter store on a pool of its own, its sessions named `producerApplicationName`. */
  store: EventStore<typeof counterEvents>;
  storeClient: postgres.Sql;
}

export interface ScenarioHarness {
  /** The worker processes the current test started. */
  readonly workers: readonly WorkerProcess[];
  /** Starts a worker process for the current test. */
  worker(options: WorkerOptions): WorkerProcess;
  /** A fresh database with the read models, and a registered Counter store. */
  setUp(options?: { storePoolSize?: number }): Promise<ScenarioDatabase>;
  /** Runs `close` after the current test (before its databases are dropped). */
  onCleanup(close: () => Promise<unknown> | unknown): void;
}

/** The application_name of the producers' sessions (pg_stat_activity), for scenarios that terminate them. */
export const producerApplicationName = 'fstore-scenario-producer';

export function useScenarioHarness(): ScenarioHarness {
  let workers: WorkerProcess[] = [];
  let databases: TestDatabase[] = [];
  let cleanups: (() => Promise<unknown> | unknown)[] = [];

  // Emptied before each test, not after: onTestFailed runs after the afterEach hooks and prints these workers' logs.
  beforeEach(() => {
    workers = [];
  });
  afterEach(async () => {
    for (const worker of workers) if (worker.alive) worker.child.kill('SIGKILL');
    await Promise.all(workers.map((worker) => worker.exited));
    for (const close of cleanups.reverse()) await Promise.resolve(close()).catch(() => {});
    cleanups = [];
    await Promise.all(databases.map((database) => database.drop()));
    databases = [];
  });

  return {
    get workers() {
      return workers;
    },
    worker(options) {
      const started = startWorker(options);
      workers.push(started);
      return started;
    },
    onCleanup(close) {
      cleanups.push(close);
    },
    async setUp({ storePoolSize = 10 } = {}) {
      const database = await createTestDatabase();
      databases.push(database);
      await createReadModel(database.sql);
      // Reconnect soon after a lost connection (postgres.js's default waits longer and longer after failures).
      const storeClient = database.connect({
        max: storePoolSize,
        connect_timeout: 5,
        backoff: (failures: number) => Math.min(0.05 * 2 ** failures, 0.5),
        connection: { application_name: producerApplicationName },
      });
      const store = createEventStore(drizzle(storeClient), counterEvents);
      await store.register();
      onTestFailed(() => {
        console.error(workerLogs(workers));
      });
      return { database, store, storeClient };
    },
  };
}
