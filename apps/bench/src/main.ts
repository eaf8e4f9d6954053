/**
 * `pnpm bench`: fstore's benchmarks, on an embedded PostgreSQL (or DATABASE_URL). Every figure that matters is a
 * ratio against a baseline measured in the same run, as the median of several rounds: these machines are shared
 * and noisy. Writes results/latest.json, results/latest.md and the charts next to them.
 *
 * The headline figures come from a server with PostgreSQL's durability defaults (fsync, full_page_writes,
 * synchronous_commit on), as production runs; the scenarios in --fsync-off are measured again on a second embedded
 * server with fsync and full_page_writes off, reported as a labelled second column.
 *
 *   pnpm bench                      the full run (at most 20 minutes here; D1 only with --only=D1)
 *   pnpm bench --quick              a smoke run in under 3 minutes (CI runs it; it fails on errors, never on speed)
 *   pnpm bench --only=A1,A4         some scenarios
 *   pnpm bench --fsync-off=none     no second column (or a list of scenarios, or all)
 *   pnpm bench --only=C1 --results=/tmp/c1   a partial run, written elsewhere than results/
 *   pnpm bench --duration=3000 --rounds=3
 *   FSTORE_BENCH_CPU_PROFILE=/tmp/profiles pnpm bench --only=S3   CPU profiles of the load and consumer processes
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  exitOnEmbeddedPostgresError,
  type PostgresServer,
  serverFromEnvironment,
  startEmbeddedPostgres,
} from '@fstore/embedded-postgres';
import { buildPackages } from './build-packages.js';
import { createContext, type Figure } from './context.js';
import { loadErrors } from './load.js';
import { lineChart, type Machine, table, writeResults } from './report.js';
import { appendScenarios } from './scenarios/appends.js';
import { archiveScenarios } from './scenarios/archive.js';
import { catchUpScenarios } from './scenarios/catchup.js';
import { dashboardScenarios } from './scenarios/dashboard.js';
import { idleScenarios } from './scenarios/idle.js';
import { latencyScenarios } from './scenarios/latency.js';
import { memoryScenarios } from './scenarios/memory.js';
import { personalDataScenarios } from './scenarios/personal-data.js';
import { snapshotScenarios } from './scenarios/snapshots.js';
import { type StreamingCharts, streamingScenarios } from './scenarios/streaming.js';
import { describeServer, mergeFsyncOff } from './settings.js';

const all = [
  'A1',
  'A2',
  'A3',
  'A3′',
  'A4',
  'A5',
  'A6',
  'A7',
  'H1',
  'R1',
  'D1',
  'S1',
  'S2',
  'S3',
  'C1',
  'L1',
  'I1',
  'M1',
];
/** A3′ is also A3' or A3P on a command line. */
const aliases: Record<string, string> = { "A3'": 'A3′', A3P: 'A3′' };
/** What the fsync-off column repeats by default: the append path, whose cost is mostly commits (a full run stays
 * under 20 minutes; --fsync-off=all repeats everything). */
const fsyncOffDefault = ['A1', 'A2', 'A3', 'A3′', 'A4', 'A5', 'A6', 'A7'];
const args = process.argv.slice(2).filter((arg) => arg !== '--');
const flag = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const quick = args.includes('--quick');
const list = (value: string) =>
  value.split(',').map((s) => aliases[s.trim().toUpperCase()] ?? s.trim().toUpperCase());
/** D1 builds ten million lock rows (about 15 minutes here): a full run leaves it out unless asked (--only=D1); a quick
 * run takes it at a tenth of the size. */
const heavy = ['D1'];
const selected = new Set(list(flag('only') ?? all.filter((s) => quick || !heavy.includes(s)).join(',')));
// A quick run repeats A1 only: enough to show the column works.
const fsyncOffFlag = flag('fsync-off') ?? (quick ? 'A1' : fsyncOffDefault.join(','));
const fsyncOffAsked = fsyncOffFlag === 'none' ? [] : fsyncOffFlag === 'all' ? all : list(fsyncOffFlag);
const durationMs = Number(flag('duration') ?? (quick ? 700 : 3000));
const rounds = Number(flag('rounds') ?? (quick ? 1 : 3));
const unknown = [...selected, ...fsyncOffAsked].filter((s) => !all.includes(s));
if (unknown.length > 0) {
  console.error(`bench: unknown scenario ${unknown.join(', ')}; choose from ${all.join(', ')}`);
  process.exit(2);
}
// A server at DATABASE_URL has the settings it has: there is no second server to compare with.
const fsyncOffSelected = new Set(
  process.env.DATABASE_URL ? [] : fsyncOffAsked.filter((s) => selected.has(s)),
);

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const servers: PostgresServer[] = [];
const start = (server: () => Promise<PostgresServer>) =>
  server()
    .then((started) => {
      servers.push(started);
      return started;
    })
    .catch((error: unknown) => exitOnEmbeddedPostgresError(error, 'bench'));

/** Runs the selected scenarios against one server; the charts come from the headline server only. */
async function runScenarios(
  ctx: ReturnType<typeof createContext>,
  only: Set<string>,
  charts: StreamingCharts,
): Promise<Figure[]> {
  const figures: Figure[] = [];
  figures.push(...(await appendScenarios(ctx, only)));
  if (only.has('A7')) figures.push(...(await personalDataScenarios(ctx)));
  if (only.has('H1')) figures.push(...(await snapshotScenarios(ctx)));
  if (only.has('R1')) figures.push(...(await archiveScenarios(ctx)));
  if (only.has('D1')) figures.push(...(await dashboardScenarios(ctx)));
  figures.push(...(await streamingScenarios(ctx, only, charts)));
  if (only.has('C1')) figures.push(...(await catchUpScenarios(ctx)));
  if (only.has('L1')) figures.push(...(await latencyScenarios(ctx)));
  if (only.has('I1')) figures.push(...(await idleScenarios(ctx)));
  if (only.has('M1')) figures.push(...(await memoryScenarios(ctx)));
  return figures;
}

try {
  const headline = await start(() => serverFromEnvironment({ durable: true }));
  const headlineSettings = await describeServer(headline);
  const second =
    fsyncOffSelected.size > 0
      ? await start(() => startEmbeddedPostgres({ durable: false }).then(asServer))
      : undefined;
  const secondSettings = second ? await describeServer(second) : undefined;
  const machine: Machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    postgres: headlineSettings.version,
    server: `${headline.description}, ${headlineSettings.settings}`,
    ...(secondSettings && second
      ? { fsyncOffServer: `${second.description}, ${secondSettings.settings}` }
      : {}),
  };
  console.log(
    `fstore bench: ${machine.cpus} CPUs (${machine.cpuModel}), Node.js ${machine.node}, ${machine.postgres}, ${machine.server}`,
  );
  if (machine.fsyncOffServer)
    console.log(`fsync-off column (${[...fsyncOffSelected].join(', ')}): ${machine.fsyncOffServer}`);
  console.log(
    `${quick ? 'quick' : 'full'} run: ${[...selected].join(', ')}; ${rounds} rounds of ${durationMs} ms per figure\n`,
  );
  // The deployed worker runs the packages' dist: built first, so that a build that fails stops the run at once.
  if (selected.has('M1') || selected.has('I1')) buildPackages(log);
  const options = { quick, durationMs, rounds, log };
  const streamingCharts: StreamingCharts = { byStreams: [], byConsumers: [] };
  let figures = await runScenarios(
    createContext({ ...options, durable: headlineSettings.durable, adminUrl: headline.adminUrl }),
    selected,
    streamingCharts,
  );
  if (second) {
    log(`fsync off: ${[...fsyncOffSelected].join(', ')}`);
    const fast = await runScenarios(
      createContext({
        ...options,
        durable: false,
        adminUrl: second.adminUrl,
        log: (message) => log(`[fsync off] ${message}`),
      }),
      fsyncOffSelected,
      { byStreams: [], byConsumers: [] },
    );
    figures = mergeFsyncOff(figures, fast);
  }
  console.log(table(figures));
  // A quick run is a smoke test: its figures go beside the full run's, never over them.
  // --results=<folder> writes a partial run elsewhere, so that it does not replace the last full run's figures.
  const directory =
    flag('results') ?? fileURLToPath(new URL(quick ? '../results/quick' : '../results', import.meta.url));
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
  const failed = figures.filter(
    (f) =>
      (!f.skipped && !Number.isFinite(f.value)) ||
      (f.fsyncOff !== undefined && !Number.isFinite(f.fsyncOff.value)),
  );
  console.log(`\nwritten: ${directory}/latest.json, latest.md${charts.map((c) => `, ${c}`).join('')}`);
  if (failed.length > 0 || loadErrors > 0) {
    console.error(`bench: ${loadErrors} statements failed, ${failed.length} figures could not be measured`);
    process.exitCode = 1;
  }
} finally {
  for (const server of servers) await server.stop();
}

function asServer(server: Awaited<ReturnType<typeof startEmbeddedPostgres>>): PostgresServer {
  return { adminUrl: server.adminUrl, description: server.description, stop: () => server.destroy() };
}
