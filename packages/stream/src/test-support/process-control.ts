/** Worker processes (worker-process.ts) that a scenario starts, watches, stops and kills. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface WorkerOptions {
  url: string;
  view: string;
  name: string;
  concurrency?: number;
  leaseSeconds?: number;
  /** The projection's maxBatchSeconds (default 15 here). */
  maxBatchSeconds?: number;
  batchSize?: number;
  /** The projection's streamsPerTransaction (default 20, as the product's). */
  streamsPerTransaction?: number;
  handlerDelayMs?: number;
  hangAtOffset?: number;
  /** Block the worker's event loop (a busy wait: no timer, no renewal) for blockMs inside the handler of this event. */
  blockAtOffset?: number;
  blockMs?: number;
  pollIntervalMs?: number;
  /** The projection's logBatches (default true); scenarios about leases turn them off. */
  logBatches?: boolean;
}

export interface WorkerProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Standard output so far, line by line. */
  readonly lines: string[];
  /** Standard error so far (the worker's JSON logs). */
  stderr(): string;
  /**
   * Resolves with the first line from line number `from` on (default 0: already printed or to come) that matches;
   * rejects after timeoutMs, or when the worker exits first.
   */
  waitForLine(pattern: RegExp, options?: { timeoutMs?: number; from?: number }): Promise<RegExpMatchArray>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly alive: boolean;
}

const tsx = createRequire(import.meta.url).resolve('tsx');
const workerScript = fileURLToPath(new URL('./worker-process.ts', import.meta.url));

export function startWorker(options: WorkerOptions): WorkerProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: options.url,
    VIEW: options.view,
    WORKER_NAME: options.name,
    CONCURRENCY: String(options.concurrency ?? 4),
    LEASE_SECONDS: String(options.leaseSeconds ?? 2),
    // Scenario workers end a hung batch's session after 15 s (the product's default is ten minutes): a session cut
    // mid-write can leave postgres.js waiting for ever (see faults.scenario.ts), and the checks wait less than that.
    MAX_BATCH_SECONDS: String(options.maxBatchSeconds ?? 15),
    BATCH_SIZE: String(options.batchSize ?? 100),
    STREAMS_PER_TRANSACTION: String(options.streamsPerTransaction ?? 20),
    HANDLER_DELAY_MS: String(options.handlerDelayMs ?? 0),
    HANG_AT_OFFSET: options.hangAtOffset === undefined ? '' : String(options.hangAtOffset),
    BLOCK_AT_OFFSET: options.blockAtOffset === undefined ? '' : String(options.blockAtOffset),
    BLOCK_MS: String(options.blockMs ?? 0),
    POLL_INTERVAL_MS: String(options.pollIntervalMs ?? 200),
    LOG_BATCHES: options.logBatches === false ? '0' : '1',
  };
  const child = spawn(process.execPath, ['--conditions=@fstore/source', '--import', tsx, workerScript], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`worker ${options.name} did not start`);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  let alive = true;
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    for (const waiter of waiters) waiter();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    // Keep the tail only: a worker that logs in a loop must not eat the test's memory.
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      alive = false;
      for (const waiter of waiters) waiter();
      resolve({ code, signal });
    });
  });
  return {
    name: options.name,
    pid: child.pid,
    child,
    lines,
    stderr: () => stderr,
    get alive() {
      return alive;
    },
    exited,
    waitForLine(pattern, { timeoutMs = 30_000, from = 0 } = {}) {
      return new Promise((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        let scanned = from;
        const check = () => {
          for (; scanned < lines.length; scanned++) {
            const match = lines[scanned]?.match(pattern);
            if (match) return finish(() => resolve(match));
          }
          if (!alive) {
            finish(() =>
              reject(
                new Error(
                  `worker ${options.name} exited before printing ${pattern}:\n${stderr.slice(-4000)}`,
                ),
              ),
            );
          }
        };
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          waiters.delete(check);
          settle();
        };
        timer = setTimeout(
          () =>
            finish(() =>
              reject(
                new Error(
                  `worker ${options.name} did not print ${pattern} within ${timeoutMs} ms; ${lines.length} lines, last: ${lines.slice(-10).join(' | ')}; other: ${lines.filter((line) => !line.startsWith('handled ')).join(' | ')}\n${stderr.slice(-4000)}`,
                ),
              ),
            ),
          timeoutMs,
        );
        waiters.add(check);
        check();
      });
    },
  };
}

/** SIGTERM, then the exit (SIGKILL after timeoutMs). */
export async function stopWorker(worker: WorkerProcess, timeoutMs = 15_000) {
  if (!worker.alive) return worker.exited;
  worker.child.kill('SIGTERM');
  const timer = setTimeout(() => worker.child.kill('SIGKILL'), timeoutMs);
  try {
    return await worker.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** What a failed scenario prints: every worker's last log lines. */
export function workerLogs(workers: readonly WorkerProcess[]): string {
  return workers
    .map((worker) => {
      const tail = worker.stderr().split('\n').slice(-40).join('\n');
      const stdout = worker.lines.slice(-10).join(' | ');
      return `--- ${worker.name} (pid ${worker.pid}${worker.alive ? '' : ', exited'}), ${worker.lines.length} stdout lines, last: ${stdout}\nstderr tail:\n${tail}`;
    })
    .join('\n');
}
