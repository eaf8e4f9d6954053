/** What the demo's programs share on their command line: whole-number flags, and failures as one line. */
import { reportFailure, UsageError } from '@fstore/stream';

/**
 * From now on, an error that nothing catches (a top-level await included) ends the process with one line on stderr
 * that names the problem and its fix (no stack, no password) and exit code 1, or 2 for a wrong command line.
 */
export function failWithOneLine(program: string, help: string): void {
  process.on('uncaughtException', (error) =>
    process.exit(reportFailure(program, error, { url: process.env.DATABASE_URL, help })),
  );
}

/** The value of `--name` as a whole number of at least `min`; a UsageError otherwise. */
export function wholeNumber(name: string, value: string, min = 1): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min) {
    throw new UsageError(`--${name} takes a whole number of ${min} or more, got ${JSON.stringify(value)}`);
  }
  return n;
}
