/**
 * `pnpm --filter @fstore/bench ablation`: where the time of a single-event append goes (scenario A1). At 8 clients,
 * append_event is measured as installed, then with its parts taken away one after the other, down to a plain INSERT
 * into events and the A1 baseline (a plain INSERT into a copy of the table with the same indexes and no trigger,
 * rule or foreign key), and last the baseline without the index that view frontiers read (events (transaction_id,
 * "offset"), migration 0009). Each row is the median of `--rounds` rounds of `--duration` ms, in one run, on one
 * database; what a step saved is what the part it took away cost. Steps whose part the schema does not have (the
 * lock-row trigger that appends ran before migration 0010) are left out.
 *
 *   pnpm --filter @fstore/bench ablation                 on a server with fsync and full_page_writes off
 *   pnpm --filter @fstore/bench ablation --fsync=on      on PostgreSQL's durable defaults
 *
 * Fsync off by default: the parts cost 5 to 30 µs each (2026-11-26), and with durable commits the flush (a
 * millisecond or more here, shared by the commits that wait for it) moves each row by more than that from round to
 * round, so the steps do not resolve. The header line states the server's settings.
 *
 * The parts are taken away with DDL on a throwaway database; nothing here is a way to run fstore.
 */
import { exitOnEmbeddedPostgresError, serverFromEnvironment } from '@fstore/embedded-postgres';
import postgres from 'postgres';
import { createContext, median } from './context.js';
import { runLoad } from './load.js';
import { markdownTable } from './report.js';
import { describeServer } from './settings.js';

const args = process.argv.slice(2).filter((arg) => arg !== '--');
const flag = (name: string) => args.find((arg) => arg.startsWith(`--${name}=`))?.split('=')[1];
const durationMs = Number(flag('duration') ?? 3000);
const rounds = Number(flag('rounds') ?? 3);
const clients = Number(flag('clients') ?? 8);
const durable = (flag('fsync') ?? 'off') === 'on';

interface Step {
  /** What this row measures, with every step above it applied. */
  label: string;
  /** DDL that takes the part away. */
  ddl?: string;
  kind: 'append' | 'insert';
  insertInto?: 'events' | 'events_baseline';
  /** The row the others are compared with. */
  baseline?: boolean;
  /** The step applies only when the schema has this trigger (relation.trigger) or index. */
  requires?: { trigger: string } | { index: string };
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
    requires: { trigger: 't_on_insert_on_events' },
  },
  {
    label: 'and without the lock-row statement trigger (t_on_insert_on_events)',
    ddl: 'ALTER TABLE events DISABLE TRIGGER t_on_insert_on_events',
    kind: 'append',
    requires: { trigger: 't_on_insert_on_events' },
  },
  {
    label: 'and without the append checks (t_check_event_append)',
    ddl: 'ALTER TABLE events DISABLE TRIGGER t_check_event_append',
    kind: 'append',
  },
  { label: 'a plain INSERT into events instead of append_event', kind: 'insert', insertInto: 'events' },
  {
    label: 'the A1 baseline: a plain INSERT into events_baseline (same indexes)',
    kind: 'insert',
    insertInto: 'events_baseline',
    baseline: true,
  },
  {
    label: 'and without the frontier index (transaction_id, "offset") on events_baseline',
    // The copy's index has a generated name: find it by its columns.
    ddl: `DO $drop$ BEGIN EXECUTE (
      SELECT format('DROP INDEX %I', indexname) FROM pg_indexes
      WHERE tablename = 'events_baseline' AND indexdef LIKE '%(transaction_id, "offset")%'); END $drop$`,
    kind: 'insert',
    insertInto: 'events_baseline',
    requires: { index: 'events_transaction_id_offset_idx' },
  },
];

/** Whether the schema has what a step takes away. */
async function applies(sql: postgres.Sql, step: Step): Promise<boolean> {
  if (!step.requires) return true;
  const [row] =
    'trigger' in step.requires
      ? await sql<{ present: boolean }[]>`
          SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = ${step.requires.trigger}) AS present`
      : await sql<{ present: boolean }[]>`
          SELECT to_regclass(${step.requires.index}) IS NOT NULL AS present`;
  return row?.present ?? false;
}

const log = (message: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const server = await serverFromEnvironment({ durable }).catch((error: unknown) =>
  exitOnEmbeddedPostgresError(error, 'ablation'),
);
try {
  const ctx = createContext({ quick: false, durable, durationMs, rounds, adminUrl: server.adminUrl, log });
  const url = await ctx.freshDatabase('ablation');
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sql`SELECT * FROM register_view('ablation-view')`;
  const settings = await describeServer({ adminUrl: url });
  console.log(
    `append ablation: ${clients} clients, ${rounds} rounds of ${durationMs} ms, ${settings.version} (${settings.settings})\n`,
  );
  const rows: { label: string; rate: number; baseline: boolean }[] = [];
  for (const step of steps) {
    if (!(await applies(sql, step))) continue;
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
    rows.push({ label: step.label, rate: median(rates), baseline: step.baseline ?? false });
    log(`${step.label}: ${Math.round(median(rates))} events/s`);
  }
  await sql.end();
  const baseline = rows.find((row) => row.baseline)?.rate ?? 1;
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
