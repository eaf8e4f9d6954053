/**
 * Runs initdb and the postmaster as child processes, with a listener for every failure a child can have (embedded-
 * postgres has none for 'error', so an EACCES ended the process with a stack trace) and a deadline for each wait.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { ServerUser } from './user.js';

const initdbTimeoutMs = 180_000;
const readyTimeoutMs = 90_000;
const readyText = 'database system is ready to accept connections';

/** Why a program failed, from its own last words; `portInUse` when another program holds the port. */
export class ProgramFailure extends Error {
  constructor(
    message: string,
    readonly portInUse = false,
  ) {
    super(message);
  }
}

/** The last lines a program wrote (it must be read all along anyway, or a full pipe would block its logging). */
export class LogTail {
  private readonly lines: string[] = [];
  private partial = '';

  push(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.add(line);
  }

  text(): string {
    return [...this.lines, this.partial].join('\n');
  }

  /** The lines that say what went wrong, else the last ones, without their time and pid prefix. */
  summary(): string {
    const lines = [...this.lines, this.partial]
      .map((line) =>
        line
          .replace(/^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] /, '')
          .replace(/\s+/g, ' ')
          .trim(),
      )
      .filter((line) => line !== '');
    const telling = lines.filter((line) => /FATAL|PANIC|ERROR|error:|could not/.test(line));
    return (telling.length > 0 ? telling : lines).slice(-3).join(' / ') || 'no output';
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 50) this.lines.shift();
  }
}

export interface Program {
  child: ChildProcess;
  tail: LogTail;
  /** Resolves when the process has ended (or never started). */
  ended: Promise<void>;
}

function launch(program: string, args: string[], user: ServerUser | undefined): Program {
  const tail = new LogTail();
  const child = spawn(program, args, {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
    // English messages: the postmaster's readiness is read from its log.
    env: { ...process.env, LC_ALL: 'C' },
  });
  child.stdout?.on('data', (chunk: Buffer) => tail.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
  const ended = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    // Kept for the process's life: an 'error' event without a listener would end ours.
    child.on('error', () => resolve());
  });
  return { child, tail, ended };
}

type Outcome =
  | { kind: 'ready' }
  | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { kind: 'error'; error: Error }
  | { kind: 'timeout' };

function outcome(program: Program, timeoutMs: number, ready?: string): Promise<Outcome> {
  const { child, tail } = program;
  return new Promise((resolve) => {
    const onData = () => {
      if (ready && tail.text().includes(ready)) done({ kind: 'ready' });
    };
    const onError = (error: Error) => done({ kind: 'error', error });
    // 'close' rather than 'exit': by then its last words are read.
    const onClose = (code: number | null, signal: NodeJS.Signals | null) =>
      done({ kind: 'exit', code, signal });
    const timer = setTimeout(() => done({ kind: 'timeout' }), timeoutMs);
    const done = (result: Outcome) => {
      clearTimeout(timer);
      child.stderr?.off('data', onData);
      child.off('error', onError);
      child.off('close', onClose);
      resolve(result);
    };
    child.stderr?.on('data', onData);
    child.on('error', onError);
    child.on('close', onClose);
  });
}

function describe(name: string, result: Outcome, timeoutMs: number): string {
  switch (result.kind) {
    case 'error':
      return `${name} could not be run (${result.error.message})`;
    case 'timeout':
      return `${name} did not finish within ${timeoutMs / 1000} s`;
    case 'exit':
      return `${name} exited with ${result.signal ? `signal ${result.signal}` : `code ${result.code}`}`;
    case 'ready':
      return `${name} is ready`;
  }
}

export async function initdb(options: {
  program: string;
  dataDir: string;
  passwordFile: string;
  user: ServerUser | undefined;
  durable: boolean;
}): Promise<void> {
  const run = launch(
    options.program,
    [
      `--pgdata=${options.dataDir}`,
      '--auth=password',
      '--username=postgres',
      `--pwfile=${options.passwordFile}`,
      // The same encoding and collation on every machine, whatever its locale settings.
      '--encoding=UTF8',
      '--locale=C',
      ...(options.durable ? [] : ['--no-sync']),
    ],
    options.user,
  );
  const result = await outcome(run, initdbTimeoutMs);
  if (result.kind === 'exit' && result.code === 0) return;
  await terminate(run);
  throw new ProgramFailure(`${describe('initdb', result, initdbTimeoutMs)}: ${run.tail.summary()}`);
}

/** Starts the postmaster and waits until it accepts connections; on failure, nothing is left running. */
export async function startPostmaster(options: {
  program: string;
  dataDir: string;
  port: number;
  flags: string[];
  user: ServerUser | undefined;
}): Promise<Program> {
  const run = launch(
    options.program,
    ['-D', options.dataDir, '-p', String(options.port), ...options.flags],
    options.user,
  );
  const result = await outcome(run, readyTimeoutMs, readyText);
  if (result.kind === 'ready') return run;
  await terminate(run);
  throw new ProgramFailure(
    `${describe('PostgreSQL', result, readyTimeoutMs)}: ${run.tail.summary()}`,
    /Address already in use/.test(run.tail.text()),
  );
}

/**
 * `fast`: SIGINT, PostgreSQL's fast shutdown; `immediate`: SIGQUIT, a stop like a crash. A shutdown that hangs is
 * escalated (SIGQUIT, then SIGKILL) rather than waited for forever.
 */
export async function terminate(program: Program, mode: 'fast' | 'immediate' = 'immediate'): Promise<void> {
  const steps: [NodeJS.Signals, number][] =
    mode === 'fast'
      ? [
          ['SIGINT', 60_000],
          ['SIGQUIT', 10_000],
          ['SIGKILL', 10_000],
        ]
      : [
          ['SIGQUIT', 10_000],
          ['SIGKILL', 10_000],
        ];
  for (const [signal, waitMs] of steps) {
    if (!alive(program.child)) break;
    program.child.kill(signal);
    if (await within(program.ended, waitMs)) break;
  }
  await program.ended;
}

export function alive(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([promise.then(() => true as const), timeout]);
  clearTimeout(timer);
  return result;
}
