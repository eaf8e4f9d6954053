/**
 * `pnpm bench`: fstore's benchmarks, on an embedded PostgreSQL (or DATABASE_URL). Every figure that matters is a
 * ratio against a baseline measured in the same run, as the median of several rounds: these machines are shared
 * and noisy. Writes results/latest.json, results/latest.md and the charts next to them.
 *
 *   pnpm bench                      the full run (at most 15 minutes here)
 *   pnpm bench --quick              a smoke run in under 2 minutes (CI runs it; it fails on errors, never on speed)
 *   pnpm bench --only=A1,A4         some scenarios
 *   pnpm bench --duration=3000 --rounds=3
 *   FSTORE_BENCH_CPU_PROFILE=/tmp/profiles pnpm bench --only=S3   CPU profiles of the load and consumer processes
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { exitOnEmbeddedPostgresError, serverFromEnvironment } from '@fstore/embedded-postgres';
import postgres from 'postgres';
import { createContext, type Figure } from './context.js';
import { loadErrors } from './load.js';
import { lineChart, type Machine, table, writeResults } from './report.js';
import { appendScenarios } from './scenarios/appends.js';
import { latencyScenarios } from './scenarios/latency.js';
import { memoryScenarios } from './scenarios/memory.js';
import { type StreamingCharts, streamingScenarios } from './scenarios/streaming.js';

const all = ['A1', 'A2', 'A3', 'A4', 'S1', 'S2', 'S3', 'L1', 'M1'];
const args = process.argv.slice(2).filter((arg) => arg !== '--');
const flag = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const quick = args.includes('--quick');
const selected = new Set((flag('only') ?? all.join(',')).split(',').map((s) => s.trim().toUpperCase()));
const durationMs = Number(flag('duration') ?? (quick ? 700 : 3000));
const rounds = Number(flag('rounds') ?? (quick ? 1 : 3));
const unknown = [...selected].filter((s) => !all.includes(s));
if (unknown.length > 0) {
  console.error(`bench: unknown scenario ${unknown.join(', ')}; choose from ${all.join(', ')}`);
  process.exit(2);
}

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const server = await serverFromEnvironment().catch((error: unknown) =>
  exitOnEmbeddedPostgresError(error, 'bench'),
);
try {
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  const [row] = await admin<{ server_version: string }[]>`SHOW server_version`;
  await admin.end();
  const machine: Machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: `PostgreSQL ${row?.server_version ?? 'unknown'}`,
    server: server.description,
  };
  console.log(
    `fstore bench: ${machine.cpus} CPUs (${machine.cpuModel}), Node.js ${machine.node}, ${machine.postgres}, ${machine.server}`,
  );
  console.log(
    `${quick ? 'quick' : 'full'} run: ${[...selected].join(', ')}; ${rounds} rounds of ${durationMs} ms per figure\n`,
  );
  const ctx = createContext({ quick, durationMs, rounds, adminUrl: server.adminUrl, log });
  const figures: Figure[] = [];
  figures.push(...(await appendScenarios(ctx, selected)));
  const streamingCharts: StreamingCharts = { byStreams: [], byConsumers: [] };
  figures.push(...(await streamingScenarios(ctx, selected, streamingCharts)));
  if (selected.has('L1')) figures.push(...(await latencyScenarios(ctx)));
  if (selected.has('M1')) figures.push(...(await memoryScenarios(ctx)));
  console.log(table(figures));
  // A quick run is a smoke test: its figures go beside the full run's, never over them.
  const directory = fileURLToPath(new URL(quick ? '../results/quick' : '../results', import.meta.url));
  const charts: string[] = [];
  mkdirSync(directory, { recursive: true });
  if (streamingCharts.byStreams.length > 1) {
    writeFileSync(
      `${directory}/throughput-by-streams.svg`,
      lineChart('Streaming throughput, 4 consumers', 'streams in the view', 'events/s', [
        { name: 'lease + ack', points: streamingCharts.byStreams },
      ]),
    );
    charts.push('throughput-by-streams.svg');
  }
  if (streamingCharts.byConsumers.length > 0) {
    writeFileSync(
      `${directory}/throughput-by-consumers.svg`,
      lineChart(
        'Streaming throughput by consumers',
        'consumer processes',
        'events/s',
        streamingCharts.byConsumers,
      ),
    );
    charts.push('throughput-by-consumers.svg');
  }
  const command = `pnpm bench ${args.join(' ')}`.trim();
  writeResults(directory, machine, command, figures, charts);
  const failed = figures.filter((f) => !Number.isFinite(f.value));
  console.log(`\nwritten: ${directory}/latest.json, latest.md${charts.map((c) => `, ${c}`).join('')}`);
  if (failed.length > 0 || loadErrors > 0) {
    console.error(`bench: ${loadErrors} statements failed, ${failed.length} figures could not be measured`);
    process.exitCode = 1;
  }
} finally {
  await server.stop();
}
