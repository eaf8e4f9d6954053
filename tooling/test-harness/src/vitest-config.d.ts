import type { ViteUserConfig } from 'vitest/config';

export interface FstoreVitestOptions {
  /** The package's global setup file (it prepares the template database); none for a package without a server. */
  globalSetup?: string;
  /** Which files: the fast suite, `*.test.ts` (default), or the slow scenario suite, `*.scenario.ts`. */
  suite?: 'unit' | 'scenarios';
  /**
   * What one test may take on a quiet machine, in milliseconds (default 60,000): the test timeout is this, scaled
   * by how busy the machine is (budget.js); hooks get at least 120,000, scaled.
   */
  testBudgetMs?: number;
}

/** How many packages turbo tests at once (turbo.json's `"concurrency": "50%"`): half the cores, at least one. */
export declare const packagesAtOnce: number;

/** How many test files one package runs at once: 1.5 times its share of the cores (`FSTORE_TEST_WORKERS` overrides it). */
export declare const testWorkers: number;

export declare function fstoreVitestConfig(options?: FstoreVitestOptions): ViteUserConfig;
