/**
 * `@fstore/store/postgres`: the postgres.js client fstore recommends, for hosts that run plain postgres.js 3.4.9.
 *
 * fstore's own workspace patches postgres.js (patches/postgres@3.4.9.patch), but pnpm applies a patch only in the
 * workspace that declares it: an application that installs fstore's packages gets the unpatched driver, which
 *
 * - on every new connection runs an internal query for the array types (`fetch_types`) and drops its promise: a
 *   connection that dies during it ends the process with an unhandled rejection (porsager/postgres#1192, #1205,
 *   #1223);
 * - sends the statements of a transaction whose session died to the connection once the pool has reconnected it,
 *   outside any transaction, where each commits on its own (porsager/postgres#1215, #1216), or, before that, writes
 *   them to a closed socket, which throws from a timer and ends the process (porsager/postgres#1154, #1208).
 *
 * createPostgresClient() avoids the first (it turns `fetch_types` off, so that query never exists) and guards
 * transactions against the second (guardTransactions()). It works the same over the patched driver. This module
 * imports postgres.js; the package's main entry does not, so PGlite users need not install it.
 */
import { readFile } from 'node:fs';
import postgres from 'postgres';
import { FstoreError } from './errors.js';

/** A postgres.js client, as `postgres(url, options)` returns it. */
export type PostgresClient<
  TTypes extends Record<string, postgres.PostgresType> = Record<string, postgres.PostgresType>,
> = ReturnType<typeof postgres<TTypes>>;

/**
 * The options createPostgresClient() sets unless told otherwise.
 *
 * `fetch_types: false` skips the query postgres.js otherwise runs on every new connection to learn the database's
 * array types. What it costs: postgres.js then has no array parsers or serializers at all, for built-in types as for
 * custom ones. A result column of an array type comes back as PostgreSQL's text (`'{1,2}'`, not `[1, 2]`), and a
 * JavaScript array is no longer accepted as the value of an array parameter. Drizzle's array columns
 * (`text().array()`) are not affected (Drizzle writes and parses the array text itself), and fstore's SQL API has no
 * array parameters or columns. Pass `fetch_types: true` to have them back, and with them the fault on connect,
 * unless your workspace applies fstore's patch.
 */
export const recommendedPostgresOptions = { fetch_types: false } as const satisfies Partial<
  postgres.Options<Record<string, postgres.PostgresType>>
>;

/**
 * Creates a postgres.js client with fstore's recommended options (recommendedPostgresOptions; yours win) and
 * guarded transactions (guardTransactions). Use it wherever you would call `postgres(url, options)`; pass it to
 * `drizzle(client)` as usual.
 *
 * What it does not cover without the patch: `target_session_attrs` (postgres.js then runs another internal query on
 * connect, with the same dropped promise), `sql.reserve()` (a reserved connection's statements are not guarded),
 * and a cancelled write that can leave a reconnected connection silent until `connect_timeout`.
 */
export function createPostgresClient<
  TTypes extends Record<string, postgres.PostgresType> = Record<string, postgres.PostgresType>,
>(url: string, options?: postgres.Options<TTypes>): PostgresClient<TTypes>;
export function createPostgresClient<
  TTypes extends Record<string, postgres.PostgresType> = Record<string, postgres.PostgresType>,
>(options?: postgres.Options<TTypes>): PostgresClient<TTypes>;
export function createPostgresClient(
  urlOrOptions?: string | postgres.Options<Record<string, postgres.PostgresType>>,
  maybeOptions?: postgres.Options<Record<string, postgres.PostgresType>>,
): PostgresClient {
  const url = typeof urlOrOptions === 'string' ? urlOrOptions : undefined;
  const options = {
    ...recommendedPostgresOptions,
    ...(typeof urlOrOptions === 'string' ? maybeOptions : urlOrOptions),
  };
  return guardTransactions(url === undefined ? postgres(options) : postgres(url, options)) as PostgresClient;
}

/**
 * A statement of a transaction that could not run any more, and was not sent: the transaction's session ended (the
 * server or the network closed its connection, `code` CONNECTION_CLOSED; the server rolled the transaction back),
 * or the transaction was already over (`code` TRANSACTION_ENDED: a statement issued after its callback returned).
 */
export class TransactionClosedError extends FstoreError {
  override name = 'TransactionClosedError';
  constructor(
    readonly code: 'CONNECTION_CLOSED' | 'TRANSACTION_ENDED',
    options?: ErrorOptions,
  ) {
    super(
      code === 'CONNECTION_CLOSED'
        ? "the transaction's connection closed: its session is gone and rolled back, so this statement was not sent"
        : 'the transaction is over: this statement was not sent',
      options,
    );
  }
}

const guarded = Symbol.for('@fstore/store/postgres.guardTransactions');

/**
 * Makes the transactions of a postgres.js client (`sql.begin`, and the savepoints in them) fail as a whole once
 * their session is gone, instead of running their later statements on the reconnected connection. Changes `client`
 * in place and returns it; calling it again does nothing. createPostgresClient() calls it for you.
 *
 * Once the transaction's connection is known closed (the transaction's promise was rejected by the close, or one of
 * its statements failed with a connection error: this is noted before your own code sees that error), each later
 * statement of the transaction, and each new savepoint, fails with TransactionClosedError without reaching the
 * driver; so do statements issued after the transaction settled. The transaction's promise rejects with the
 * connection error. postgres.js' closing statement (COMMIT, ROLLBACK, ROLLBACK TO) is then never sent either, so
 * nothing runs on whatever session the pool has opened since.
 *
 * It covers what Drizzle's postgres-js driver calls (`begin`, `tx.unsafe(…).values()`, `tx.savepoint`) and the
 * tagged template, `tx.unsafe` and `tx.file`.
 */
export function guardTransactions<TClient extends { begin: (...args: never[]) => unknown }>(
  client: TClient,
): TClient {
  const target = client as TClient & { [guarded]?: true };
  if (target[guarded]) return client;
  const begin = client.begin as unknown as (...args: unknown[]) => Promise<unknown>;
  const guardedBegin = (...args: unknown[]) => {
    const fn = args[args.length - 1] as Body;
    const transaction = new TransactionState();
    const body = (tx: DriverScope) => transaction.unlessLost(run(fn, guardScope(tx, transaction)));
    const result = args.length > 1 ? begin(args[0], body) : begin(body);
    Promise.prototype.then.call(
      result,
      () => transaction.end(),
      (error: unknown) => transaction.end(error),
    );
    return Promise.race([result, transaction.lost]);
  };
  Object.defineProperty(client, 'begin', { value: guardedBegin, configurable: true, writable: true });
  Object.defineProperty(client, guarded, { value: true });
  return client;
}

/** What the driver's Query objects offer that the guard uses (postgres.js 3.4 src/query.js). */
interface DriverQuery extends Promise<unknown> {
  handler: Handler;
  strings: string[];
  reject(error: unknown): void;
}
type Handler = ((query: DriverQuery) => void) & { debug?: unknown };

/** A transaction's (or savepoint's) `sql`, as postgres.js builds it (src/index.js, Sql() and scope()). */
interface DriverScope {
  (strings: unknown, ...args: unknown[]): unknown;
  unsafe(...args: unknown[]): DriverQuery;
  file(...args: unknown[]): DriverQuery;
  savepoint(...args: unknown[]): Promise<unknown>;
}
type Body = (tx: DriverScope) => unknown;

/** Errors after which the session is gone: postgres.js' own for a closed connection, socket errors, FATAL. */
const sessionEndingCodes = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
]);

function endsSession(error: unknown): boolean {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return (
    (typeof code === 'string' && sessionEndingCodes.has(code)) || severity === 'FATAL' || severity === 'PANIC'
  );
}

/** One transaction, shared by its savepoints. */
class TransactionState {
  /** Why its statements must no longer run, once they must not. */
  closed: { code: TransactionClosedError['code']; cause: unknown } | undefined;
  sessionLost = false;
  /** Rejects when the session is known gone; only ever raced. */
  readonly lost: Promise<never>;
  private rejectLost: (error: unknown) => void = () => {};

  constructor() {
    this.lost = new Promise<never>((_, reject) => {
      this.rejectLost = reject;
    });
    this.lost.catch(() => {});
  }

  loseSession(error: unknown) {
    if (this.closed) return;
    this.sessionLost = true;
    this.closed = { code: 'CONNECTION_CLOSED', cause: error };
    this.rejectLost(error);
  }

  /** Fails a statement (or savepoint) without sending it, if the transaction is closed; else false. */
  refused(query: { reject(error: unknown): void }): boolean {
    if (!this.closed) return false;
    query.reject(new TransactionClosedError(this.closed.code, { cause: this.closed.cause }));
    return true;
  }

  /** The transaction settled: with the connection's close (postgres.js races the body against it), or on its own. */
  end(error?: unknown) {
    if (error !== undefined && endsSession(error)) this.loseSession(error);
    this.closed ??= { code: 'TRANSACTION_ENDED', cause: error };
  }

  /**
   * What the driver's transaction (or savepoint) waits for: the body's outcome, unless the session is gone, in which
   * case it waits for ever, so that postgres.js sends no COMMIT, ROLLBACK or ROLLBACK TO on the connection (which the
   * pool may have reconnected, or which has no socket any more). The caller is not kept waiting: the transaction's
   * promise is raced against `lost`, and postgres.js' own race against the close.
   */
  unlessLost<T>(outcome: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      outcome.then(
        (value) => this.sessionLost || resolve(value),
        (error: unknown) => this.sessionLost || reject(error),
      );
    });
  }
}

/** Runs a transaction body as postgres.js does: a thrown error rejects, an array of queries is awaited as a whole. */
function run(fn: Body, tx: DriverScope): Promise<unknown> {
  return new Promise((resolve) => {
    const result = fn(tx);
    resolve(Array.isArray(result) ? Promise.all(result) : result);
  });
}

/** A transaction's `sql` whose statements fail once the transaction is closed, and note a lost session. */
function guardScope(tx: DriverScope, transaction: TransactionState): DriverScope {
  const guard = (query: DriverQuery, send: Handler = query.handler) => {
    query.handler = Object.assign((q: DriverQuery) => transaction.refused(q) || send(q), {
      debug: send.debug,
    });
    // Registered before anyone else can: the transaction is closed before the caller's own handler runs. Promise's
    // own then() does not start the query, as the Query's does.
    Promise.prototype.then.call(query, undefined, (error: unknown) => {
      if (endsSession(error)) transaction.loseSession(error);
    });
    return query;
  };
  const scoped = (strings: unknown, ...args: unknown[]) => {
    const made = tx(strings, ...args);
    return Array.isArray((strings as { raw?: unknown } | undefined)?.raw) ? guard(made as DriverQuery) : made;
  };
  return Object.assign(scoped, tx, {
    unsafe: (...args: unknown[]) => guard(tx.unsafe(...args)),
    file: (path: unknown, ...args: unknown[]) => {
      // postgres.js reads the file when the query runs, then hands it on: check again once it is read.
      const query = tx.file(path, ...args);
      const send = tx.unsafe('').handler;
      const guardedSend: Handler = (q) => transaction.refused(q) || send(q);
      return guard(query, (q) =>
        readFile(String(path), 'utf8', (error, text) => {
          if (error) return q.reject(error);
          q.strings = [text];
          guardedSend(q);
        }),
      );
    },
    savepoint: (...args: unknown[]): Promise<unknown> => {
      // postgres.js' tagged form, savepoint`statement`: that one statement in a savepoint.
      if (Array.isArray((args[0] as { raw?: unknown } | undefined)?.raw)) {
        return scopedSavepoint((inner: DriverScope) => inner(...(args as [unknown, ...unknown[]])));
      }
      return typeof args[0] === 'function'
        ? scopedSavepoint(args[0] as Body)
        : scopedSavepoint(args[1] as Body, args[0]);
    },
  }) as DriverScope;

  function scopedSavepoint(fn: Body, name?: unknown): Promise<unknown> {
    // postgres.js would send SAVEPOINT at once, on whatever the connection is now.
    if (transaction.closed) return new Promise((_, reject) => transaction.refused({ reject }));
    const body = (inner: DriverScope) => transaction.unlessLost(run(fn, guardScope(inner, transaction)));
    const result = name === undefined ? tx.savepoint(body) : tx.savepoint(name, body);
    return Promise.race([result, transaction.lost]);
  }
}
