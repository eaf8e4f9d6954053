/**
 * What a command-line program prints when it fails: one line that names the problem and its fix, never a stack and
 * never a password. `fstore status` and the demo's programs share it.
 *
 * Errors are classified by their codes only: SQLSTATE (found through drizzle's wrapping, see databaseError), Node's
 * network codes (ECONNREFUSED, ENOTFOUND, ETIMEDOUT, …), postgres.js' own (CONNECT_TIMEOUT, CONNECTION_CLOSED, …),
 * parseArgs' (ERR_PARSE_ARGS_*). A message is shown, never read.
 */
import { type Database, FstoreError } from '@fstore/store';
import { databaseError, queryRows } from '@fstore/store/internal';
import { sql } from 'drizzle-orm';

const runMigrations =
  "run its migrations (drizzle-kit migrate with @fstore/schema's config, or migrate() from @fstore/schema)";

/** A command line the program does not understand: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The database has none (or not all) of the fstore SQL API a program needs: its migrations have not run there. */
export class FstoreNotInstalledError extends FstoreError {
  override name = 'FstoreNotInstalledError';
  constructor(
    readonly database: string,
    /** The functions that are missing, as `name(argument types)`. */
    readonly missing: readonly string[],
    /** Whether fstore's migrations table exists: some migrations ran, the later ones did not. */
    readonly partly: boolean,
  ) {
    super(
      partly
        ? `fstore in database ${database} is older than this program (it lacks ${missing.join(', ')}): ${runMigrations}`
        : `fstore is not installed in database ${database}: ${runMigrations}`,
    );
  }
}

/**
 * Checks, before anything else runs, that the SQL API functions a program calls exist where its queries will look
 * for them (the search_path), and throws FstoreNotInstalledError when they do not. It needs no privilege beyond
 * connecting: it reads the catalogs only.
 */
export async function checkInstalled(
  db: Database,
  functions: readonly string[] = ['view_status()'],
): Promise<void> {
  const names = sql.join(
    functions.map((signature) => sql`(${signature}::text)`),
    sql`, `,
  );
  const [row] = await queryRows(
    db,
    sql`SELECT current_database() AS database,
          EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'fstore' AND c.relname = '__fstore_migrations') AS recorded,
          (SELECT coalesce(string_agg(signature, ', '), '') FROM (VALUES ${names}) AS f(signature)
           WHERE to_regprocedure(signature) IS NULL) AS missing`,
  );
  const missing = String(row?.missing ?? '');
  if (missing !== '') {
    throw new FstoreNotInstalledError(String(row?.database), missing.split(', '), row?.recorded === true);
  }
}

export interface ErrorLineOptions {
  /** The connection string the program used: where it tried to go, and the password no line may show. */
  url?: string | undefined;
  /** The command that shows the usage, for usage errors: `fstore --help`. */
  help?: string;
}

export interface Failure {
  /** `program: what went wrong: what to do`, one line without its newline. */
  line: string;
  /** 2 for a usage error, 1 for anything else. */
  exitCode: 1 | 2;
}

/** The one line a program prints for an error, and the code it exits with. */
export function describeFailure(program: string, error: unknown, options: ErrorLineOptions = {}): Failure {
  const usage = isUsageError(error);
  const text = usage
    ? `${message(error)}${options.help ? ` (see ${options.help})` : ''}`
    : describe(error, target(options.url));
  return { line: redact(oneLine(`${program}: ${text}`), options.url), exitCode: usage ? 2 : 1 };
}

/** Prints the failure's line on stderr and returns its exit code. */
export function reportFailure(program: string, error: unknown, options: ErrorLineOptions = {}): 1 | 2 {
  const { line, exitCode } = describeFailure(program, error, options);
  process.stderr.write(`${line}\n`);
  return exitCode;
}

function isUsageError(error: unknown): boolean {
  if (error instanceof UsageError) return true;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/** Where the URL points, as far as it says: the parts a line may show. */
interface Target {
  host?: string;
  port?: string;
  user?: string;
  database?: string;
}

function target(url: string | undefined): Target {
  if (!url) return {};
  try {
    const parsed = new URL(url);
    const decode = (part: string) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    };
    const database = decode(parsed.pathname.replace(/^\//, ''));
    return {
      ...(parsed.hostname ? { host: parsed.hostname } : {}),
      port: parsed.port || '5432',
      ...(parsed.username ? { user: decode(parsed.username) } : {}),
      ...(database ? { database } : {}),
    };
  } catch {
    return {};
  }
}

/** The network or driver error in a chain of causes (drizzle wraps driver errors), with where it tried to go. */
interface NetworkError {
  code: string;
  address?: unknown;
  port?: unknown;
  hostname?: unknown;
}

function networkError(error: unknown): NetworkError | undefined {
  let current: unknown = error;
  for (let depth = 0; current && depth < 5; depth++) {
    const shape = current as NetworkError & { cause?: unknown; errors?: unknown };
    if (typeof shape.code === 'string') return shape;
    // Node's connection attempts to several addresses (localhost: ::1, 127.0.0.1) fail with an AggregateError.
    current = Array.isArray(shape.errors) && shape.errors.length > 0 ? shape.errors[0] : shape.cause;
  }
  return undefined;
}

function describe(error: unknown, to: Target): string {
  if (error instanceof FstoreNotInstalledError) return error.message;
  // Network codes first: some (EPIPE) have the shape of a SQLSTATE.
  const network = networkError(error);
  const described = network && describeNetwork(network, to);
  if (described) return described;
  const db = databaseError(error);
  if (db) return describeSqlState(db.code, error, to);
  return message(error);
}

function server(to: Target, network?: NetworkError): string {
  const host = network?.address ?? network?.hostname ?? to.host;
  const port = network?.port ?? to.port;
  const show = (value: unknown) => (Array.isArray(value) ? value.join(',') : String(value));
  if (host === undefined || host === null) return 'the server';
  return port === undefined || port === null ? show(host) : `${show(host)}:${show(port)}`;
}

const checkUrl = 'is PostgreSQL running, and is DATABASE_URL right?';

function describeNetwork(network: NetworkError, to: Target): string | undefined {
  const where = server(to, network);
  switch (network.code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${where} (connection refused): ${checkUrl}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return `cannot connect to ${where} (no such host): is the host name in DATABASE_URL right?`;
    case 'ETIMEDOUT':
    case 'CONNECT_TIMEOUT':
      return `cannot connect to ${where} (timed out): is PostgreSQL running there, can this machine reach it, and is DATABASE_URL right?`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot connect to ${where} (no route to the host): is DATABASE_URL right, and can this machine reach it?`;
    case 'ECONNRESET':
    case 'EPIPE':
    case 'CONNECTION_CLOSED':
    case 'CONNECTION_DESTROYED':
      return `the connection to ${where} was closed by the server or the network: ${checkUrl}`;
    case 'ERR_INVALID_URL':
      return 'DATABASE_URL is not a connection URL: expected postgres://user:password@host:5432/database';
    default:
      return undefined;
  }
}

function describeSqlState(code: string, error: unknown, to: Target): string {
  const where = server(to);
  const database = to.database ? `database ${to.database}` : 'the database';
  const said = `${message(error)} (${code})`;
  switch (code) {
    case '28P01':
      return `PostgreSQL at ${where} refused the password${to.user ? ` of user ${to.user}` : ''} (28P01): check the user and password in DATABASE_URL`;
    case '28000':
      return `PostgreSQL at ${where} does not let ${to.user ? `user ${to.user}` : 'this user'} in: ${said}: check the user in DATABASE_URL, and the server's pg_hba.conf`;
    case '3D000':
      return `${database} does not exist on ${where} (3D000): create it (CREATE DATABASE), or fix the database name in DATABASE_URL`;
    case '42883':
    case '42P01':
    case '3F000':
      return `fstore is not installed in ${database}, or not all of it (${message(error)}, ${code}): ${runMigrations}`;
    case '42501':
      return `${message(error)} (42501): connect as a role that has fstore's privileges (see @fstore/schema's sql/least-privilege.sql)`;
    case '57P03':
      return `PostgreSQL at ${where} is starting up or shutting down (57P03): try again in a moment`;
    case '53300':
      return `PostgreSQL at ${where} has no connection slot left (53300): close other connections, or raise max_connections`;
    case '57P01':
    case '57P02':
      return `PostgreSQL at ${where} ended the session (${code}): did it restart or shut down?`;
    default:
      return code.startsWith('08') ? `cannot connect to ${where}: ${said}: ${checkUrl}` : said;
  }
}

/** The error's own message: the driver's under drizzle's "Failed query: …" wrapping, as the error would show it. */
function message(error: unknown): string {
  let current: unknown = error;
  let text = error instanceof Error ? error.message : String(error);
  for (let depth = 0; current && depth < 5; depth++) {
    const shape = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof shape.code === 'string' && typeof shape.message === 'string') {
      text = shape.message;
      break;
    }
    current = shape.cause;
  }
  return text;
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' / ');
}

/**
 * Takes the URL, and its password, out of a line, wherever a message may have copied them. (The lines above are
 * built from the host, port, user and database only.)
 */
function redact(line: string, url: string | undefined): string {
  if (!url) return line;
  let result = line.split(url).join('DATABASE_URL');
  let password = '';
  try {
    password = new URL(url).password;
  } catch {}
  if (password) {
    let decoded = password;
    try {
      decoded = decodeURIComponent(password);
    } catch {}
    for (const secret of new Set([password, decoded])) result = result.split(`:${secret}@`).join(':***@');
  }
  return result;
}
