/** What to do when the embedded server cannot run: every CLI that starts one also accepts DATABASE_URL. */
export const useYourOwnServer = 'set DATABASE_URL to a PostgreSQL server of your own to use it instead';

/**
 * Why an embedded PostgreSQL could not start, and what to do about it, in one line: the message is all a user needs,
 * so the stack is that line too (test runners and Node print it without frames); `cause` keeps the original error.
 */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(oneLine(message), options);
    this.stack = `${this.name}: ${this.message}`;
  }
}

/** `embedded PostgreSQL 18 cannot start: <why>; <what to do>`. */
export function cannotStart(
  version: string,
  why: string,
  options: { hint?: string; cause?: unknown } = {},
): EmbeddedPostgresError {
  return new EmbeddedPostgresError(
    `embedded PostgreSQL ${version} cannot start: ${why}; ${options.hint ?? useYourOwnServer}`,
    { cause: options.cause },
  );
}

export function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' / ');
}

/**
 * For command-line programs: prints an EmbeddedPostgresError as its one line (after `program: ` when given) on stderr
 * and exits 1; any other error is rethrown, so that a bug still shows its stack.
 */
export function exitOnEmbeddedPostgresError(error: unknown, program?: string): never {
  if (!(error instanceof EmbeddedPostgresError)) throw error;
  process.stderr.write(`${program ? `${program}: ` : ''}${error.message}\n`);
  process.exit(1);
}
