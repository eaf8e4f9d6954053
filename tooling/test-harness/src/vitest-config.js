// Plain JavaScript on purpose: vitest loads config files with Node itself, which does not run TypeScript from a
// linked workspace package. Types are in vitest-config.d.ts.
import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

const conditions = ['@fstore/source', ...defaultServerConditions];

/**
 * The vitest configuration every package shares: real PostgreSQL from the package's global setup, test files in
 * parallel (each in its own database), workspace packages resolved to their TypeScript sources.
 */
export function fstoreVitestConfig({ globalSetup, suite = 'unit' }) {
  return defineConfig({
    resolve: { conditions },
    ssr: { resolve: { conditions } },
    test: {
      globalSetup: [globalSetup],
      include: suite === 'unit' ? ['src/**/*.test.ts'] : ['src/**/*.scenario.ts'],
      exclude: ['**/node_modules/**', '**/dist/**'],
      testTimeout: 60_000,
      hookTimeout: 120_000,
      // Test files hold real connections; two cores gain nothing from more than a few at once.
      maxWorkers: 4,
    },
  });
}
