import { defineConfig } from 'vitest/config';

// No shared server here: each test starts the embedded PostgreSQL it is about.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Every test starts real servers; two cores gain nothing from more at once.
    maxWorkers: 2,
  },
});
