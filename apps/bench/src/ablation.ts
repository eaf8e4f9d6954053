/**
 * `pnpm --filter @fstore/bench ablation`: where the time of a single-event append goes (scenario A1's miss). At 8
 * clients, append_event is measured as installed, then with its parts taken away one after the other, down to a
 * plain INSERT into events and the A1 baseline (a plain INSERT into a copy of the table with no trigger, rule or
 * foreign key). Each row is the median of `--rounds` rounds of `--duration` ms, in one run, on one database; what a
 * step saved is what the part it took away cost.
 *
 * The parts are taken away with DDL on a throwaway database; nothing here is a way to run fstore.
 */
import { exitOnEmbeddedPostgresError, serverFromEnvironment } from '@fstore/embedded-postgres';
import postgres from 'postgres';
import { createContext, median } from './context.js';
import { runLoad } from './load.js';
import { markdownTable } from './report.js';

const args = process.argv.slice(2).filter((arg) => arg !== '--');
const flag = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const durationMs = Number(flag('duration') ?? 3000);
const rounds = Number(flag('rounds') ?? 3);
const clients = Number(flag('clients') ?? 8);

interface Step {
  /** What this row measures, with every step above it applied. */
  label: string;
  /** DDL that takes the part away. */
  ddl?: string;
  kind: 'append' | 'insert';
  insertInto?: 'events' | 'events_baseline';
}

const steps: Step[] = [
  { label: 'append_event, as installed (1 view registered)', kind: 'append' },
  {
    label: 'without the foreign key to deciders (events_decider_event_fkey)',
    ddl: 'ALTER TABLE events DROP CONSTRAINT events_decider_event_fkey',
    kind: 'append',
  },
  {
    label: 'and no view registered (the lock-row trigger finds no view)',
    ddl: 'DELETE FROM views',
    kind: 'append',
  },
  {
    label: 'and without the lock-row statement trigger (t_on_insert_on_events)',
    ddl: 'ALTER TABLE events DISABLE TRIGGER t_on_insert_on_events',
    kind: 'append',
  },
  {
    label: 'and without the append checks (t_check_event_append)',
    ddl: 'ALTER TABLE events DISABLE TRIGGER t_check_event_append',
    kind: 'append',
  },
  { label: 'a plain INSERT into events instead of append_event', kind: 'insert', insertInto: 'events' },
  {
    label: 'the A1 baseline: a plain INSERT into events_baseline',
    kind: 'insert',
    insertInto: 'events_baseline',
  },
];

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const server = await serverFromEnvironment().catch((error: unknown) =>
  exitOnEmbeddedPostgresError(error, 'ablation'),
);
try {
  const ctx = createContext({
    quick: false,
    durable: false,
    durationMs,
    rounds,
    adminUrl: server.adminUrl,
    log,
  });
  const url = await ctx.freshDatabase('ablation');
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql`SELECT * FROM register_view('ablation-view')`;
  const [version] = await sql<{ server_version: string }[]>`SHOW server_version`;
  console.log(
    `append ablation: ${clients} clients, ${rounds} rounds of ${durationMs} ms, PostgreSQL ${version?.server_version}\n`,
  );
  const rows: { label: string; rate: number }[] = [];
  for (const step of steps) {
    if (step.ddl) await sql.unsafe(step.ddl);
    const rates: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const result = await runLoad({
        url,
        clients,
        durationMs,
        kind: step.kind,
        batchSize: 1,
        ratePerClient: 0,
        label: `ablation${rows.length}`,
        ...(step.insertInto ? { insertInto: step.insertInto } : {}),
      });
      if (result.errors > 0) throw new Error(`${step.label}: ${result.errors} statements failed`);
      rates.push(result.eventsPerSecond);
    }
    rows.push({ label: step.label, rate: median(rates) });
    log(`${step.label}: ${Math.round(median(rates))} events/s`);
  }
  await sql.end();
  const baseline = rows.at(-1)?.rate ?? 1;
  console.log(
    markdownTable(
      ['step', 'events/s', 'of the A1 baseline', '1 / throughput', 'saved by this step'],
      rows.map((row, index) => {
        const previous = rows[index - 1];
        return [
          row.label,
          Math.round(row.rate).toLocaleString('en-US'),
          `${(row.rate / baseline).toFixed(2)}x`,
          `${(1e6 / row.rate).toFixed(0)} µs`,
          previous ? `${(1e6 / previous.rate - 1e6 / row.rate).toFixed(0)} µs` : '',
        ];
      }),
    ),
  );
} finally {
  await server.stop();
}
