import type { ViteUserConfig } from 'vitest/config';

export interface FstoreVitestOptions {
  /** The package's global setup file (it prepares the template database). */
  globalSetup: string;
  /** Which files: the fast suite, `*.test.ts` (default), or the slow scenario suite, `*.scenario.ts`. */
  suite?: 'unit' | 'scenarios';
}

export declare function fstoreVitestConfig(options: FstoreVitestOptions): ViteUserConfig;
