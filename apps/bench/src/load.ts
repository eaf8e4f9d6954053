import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { LoadWorkerInput, LoadWorkerOutput } from './load-worker.js';

export interface LoadResult {
  eventsPerSecond: number;
  operationsPerSecond: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  /** Client CPU used (all load processes), as a share of one core. */
  clientCpu: number;
}

const tsx = createRequire(import.meta.url).resolve('tsx');
/**
 * How load and consumer processes start. With FSTORE_BENCH_CPU_PROFILE=<folder>, each writes a V8 CPU profile there
 * when it exits (open it in Chrome DevTools' Performance panel or speedscope for a flame graph).
 */
const profile = process.env.FSTORE_BENCH_CPU_PROFILE
  ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FSTORE_BENCH_CPU_PROFILE}`]
  : [];
const childArgs = ['--conditions=@fstore/source', '--import', tsx, ...profile];
/**
 * A deployed worker: plain Node.js on the built packages (no loader, no source condition). FSTORE_BENCH_NODE_OPTIONS
 * adds flags to it (e.g. --max-semi-space-size=4, --heapsnapshot-signal=SIGUSR2) to see where its memory goes.
 */
const deployedArgs = () => [
  ...profile,
  ...(process.env.FSTORE_BENCH_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []),
];
const workerFile = fileURLToPath(new URL('./load-worker.ts', import.meta.url));

/** Statements that failed during the run: a smoke run fails on them (never on speed). */
export let loadErrors = 0;

/** Runs `clients` connections spread over a few load processes for `durationMs`, and sums what they did. */
export async function runLoad(
  options: Omit<LoadWorkerInput, 'clients' | 'streamPrefix'> & { clients: number; label: string },
): Promise<LoadResult> {
  const threads = Math.max(1, Math.min(options.clients, Math.max(2, cpus().length)));
  const started = performance.now();
  const outputs = await Promise.all(
    Array.from({ length: threads }, (_, t) => {
      const clients = Math.floor(options.clients / threads) + (t < options.clients % threads ? 1 : 0);
      if (clients === 0)
        return Promise.resolve<LoadWorkerOutput>({
          cpuMs: 0,
          operations: 0,
          events: 0,
          errors: 0,
          latenciesMs: [],
        });
      const input: LoadWorkerInput = {
        ...options,
        clients,
        streamPrefix: `${options.label}-${Date.now()}-${t}`,
      };
      return new Promise<LoadWorkerOutput>((resolve, reject) => {
        const child = fork(workerFile, [JSON.stringify(input)], {
          execArgv: childArgs,
        });
        let output: LoadWorkerOutput | undefined;
        child.once('message', (message) => {
          output = message as LoadWorkerOutput;
        });
        child.once('error', reject);
        child.once('exit', (code) => {
          if (!output) reject(new Error(`load process exited with ${code} and no result`));
          else resolve(output);
        });
      });
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  loadErrors += outputs.reduce((total, o) => total + o.errors, 0);
  const latencies = outputs.flatMap((o) => o.latenciesMs).sort((a, b) => a - b);
  const pick = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  const sum = (f: (o: LoadWorkerOutput) => number) => outputs.reduce((total, o) => total + f(o), 0);
  return {
    eventsPerSecond: sum((o) => o.events) / seconds,
    operationsPerSecond: sum((o) => o.operations) / seconds,
    errors: sum((o) => o.errors),
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
    clientCpu: outputs.reduce((total, o) => total + o.cpuMs, 0) / 1000 / seconds,
  };
}

/**
 * Runs `count` consumer processes at once; `whenDone` may ask them to stop early. They run consumer-process.ts from
 * source under tsx, or with `deployed` deployed-worker.mjs on plain Node.js over the packages' dist.
 */
export async function runConsumers(
  input: import('./consumer-process.js').ConsumerInput,
  count: number,
  whenDone?: () => Promise<void>,
  options: { deployed?: boolean } = {},
): Promise<{ events: number; seconds: number; clientCpu: number; maxRssMb: number }> {
  const file = fileURLToPath(
    new URL(options.deployed ? './deployed-worker.mjs' : './consumer-process.ts', import.meta.url),
  );
  const started = performance.now();
  const children = Array.from({ length: count }, () =>
    fork(file, [JSON.stringify(input)], { execArgv: options.deployed ? deployedArgs() : childArgs }),
  );
  const ready = children.map(
    (child) =>
      new Promise<void>((resolve) => {
        const onMessage = (message: unknown) => {
          if (message !== 'ready') return;
          child.off('message', onMessage);
          resolve();
        };
        child.on('message', onMessage);
        child.once('exit', () => resolve());
      }),
  );
  const outputs = children.map(
    (child) =>
      new Promise<import('./consumer-process.js').ConsumerOutput>((resolve, reject) => {
        let output: import('./consumer-process.js').ConsumerOutput | undefined;
        child.on('message', (message) => {
          if (message !== 'ready') output = message as import('./consumer-process.js').ConsumerOutput;
        });
        child.once('exit', (code) =>
          output ? resolve(output) : reject(new Error(`consumer exited with ${code}`)),
        );
      }),
  );
  // Every process starts its work at once, when all have loaded (see consumer-process.ts).
  void Promise.all(ready).then(() => {
    for (const child of children) if (child.connected) child.send('go');
  });
  if (whenDone) {
    // The deadline counts from when every process has loaded.
    await Promise.all(ready);
    await whenDone();
    for (const child of children) if (child.connected) child.send('stop');
  }
  const results = await Promise.all(outputs);
  const wall = (performance.now() - started) / 1000;
  // Each process times itself from 'go' (its start-up, loading TypeScript, is not the system's cost) to the last
  // event it consumed; a process that consumed nothing does not set the end.
  const working = results.filter((r) => r.events > 0);
  const seconds = Math.max(...(working.length > 0 ? working : results).map((r) => r.seconds));
  return {
    events: results.reduce((sum, r) => sum + r.events, 0),
    seconds,
    clientCpu: results.reduce((sum, r) => sum + r.cpuMs, 0) / 1000 / wall,
    maxRssMb: Math.max(...results.map((r) => r.maxRssMb)),
  };
}
