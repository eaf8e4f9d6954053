// Plain JavaScript on purpose: the vitest configuration (vitest-config.js) uses it too, and vitest loads config files
// with Node itself. Types are in budget.d.ts.
import { availableParallelism, loadavg } from 'node:os';

/** The cores this process may use (the CPU affinity mask, not every core of the host). */
export const cores = availableParallelism();

/** The largest slow-down a budget allows for: beyond it, a test that has not finished is taken to hang. */
const maxScale = 8;

/**
 * How much slower than a quiet machine this one runs now: `FSTORE_TEST_TIME_SCALE` when set; otherwise the
 * one-minute load average per core (with more runnable processes than cores, each gets that share of a core), at
 * least 1 and at most 8. Read again at each call, so a package that starts later sees the load of then.
 */
export function timeScale() {
  const fixed = Number(process.env.FSTORE_TEST_TIME_SCALE);
  if (Number.isFinite(fixed) && fixed > 0) return fixed;
  const [perMinute = 0] = loadavg(); // 0 where there is no load average (Windows)
  return Math.min(maxScale, Math.max(1, perMinute / cores));
}

/**
 * A wall-clock budget for a test or a hook, in milliseconds: `quietMs` is what it may take on a quiet machine of
 * this kind, generously (a hang detector, not a performance requirement), scaled by timeScale(). For a test that
 * needs more than the default: `test(name, fn, budget(180_000))`.
 */
export function budget(quietMs) {
  return Math.ceil(quietMs * timeScale());
}
