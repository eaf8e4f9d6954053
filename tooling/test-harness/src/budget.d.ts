/** The cores this process may use (the CPU affinity mask, not every core of the host). */
export declare const cores: number;

/**
 * How much slower than a quiet machine this one runs now: `FSTORE_TEST_TIME_SCALE` when set; otherwise the
 * one-minute load average per core, at least 1 and at most 8.
 */
export declare function timeScale(): number;

/**
 * A wall-clock budget for a test or a hook, in milliseconds: what it may take on a quiet machine, scaled by
 * timeScale(). For a test that needs more than the default: `test(name, fn, budget(180_000))`.
 */
export declare function budget(quietMs: number): number;
