// Plain JavaScript on purpose: vitest loads config files with Node itself, which does not run TypeScript from a
// linked workspace package. Types are in vitest-config.d.ts.
import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';
import { budget, cores } from './budget.js';

// Without vite's `module` condition, which Node does not know: OpenTelemetry's packages map it to builds whose
// extensionless imports only a bundler resolves, so Node (which loads dependencies here) must take what it takes.
const conditions = [
  '@fstore/source',
  ...defaultServerConditions.filter((condition) => condition !== 'module'),
];

/**
 * How many packages turbo tests at once: turbo.json's `"concurrency": "50%"`, half the cores, at least one. Keep
 * the two in step.
 */
export const packagesAtOnce = Math.max(1, Math.floor(cores / 2));

/**
 * How many test files one package runs at once: half as many again as its share of the cores (on two cores: one
 * package at a time, three files at once). A test file keeps about a core busy between itself and its PostgreSQL
 * backends while it works, and PGlite (WebAssembly) keeps one busy alone, but files also wait (leases expiring, lock
 * waits, processes starting), and the extra file fills those gaps. Measured on two busy cores, two runs side by
 * side: three files at once finished in 244 s; two in 280 s; four in 270-279 s; two packages at once with two files
 * each in 257 s; two packages at once with one file each in 360 s. `FSTORE_TEST_WORKERS` overrides it.
 */
export const testWorkers =
  Number(process.env.FSTORE_TEST_WORKERS) || Math.max(1, Math.round((cores * 1.5) / packagesAtOnce));

/**
 * The vitest configuration every package shares: real PostgreSQL from the package's global setup (if it has one),
 * test files in parallel (each in its own database), workspace packages resolved to their TypeScript sources.
 * Timeouts are hang detectors, scaled to how busy the machine is (budget.js): `testBudgetMs` is what one test may
 * take on a quiet machine (a minute unless the package says otherwise); a test that needs more than its package's
 * gives its own `budget(...)`, or belongs in the scenario suite.
 */
export function fstoreVitestConfig({ globalSetup, suite = 'unit', testBudgetMs = 60_000 } = {}) {
  return defineConfig({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    test: {
      globalSetup: globalSetup ? [globalSetup] : [],
      include: suite === 'unit' ? ['src/**/*.test.ts'] : ['src/**/*.scenario.ts'],
      exclude: ['**/node_modules/**', '**/dist/**'],
      testTimeout: budget(testBudgetMs),
      hookTimeout: budget(Math.max(testBudgetMs, 120_000)),
      teardownTimeout: budget(30_000),
      maxWorkers: testWorkers,
    },
  });
}
