/**
 * One load-generating process: opens its own connections and appends (or inserts) as fast as they answer until the
 * deadline, then reports counts and latencies. Several of these run at once, so the client is not the bottleneck.
 */
import { randomUUID } from 'node:crypto';
import postgres from 'postgres';

export interface LoadWorkerInput {
  url: string;
  clients: number;
  durationMs: number;
  /**
   * insert: plain INSERT into events_baseline; append: append_event after the previous event; batch: append_events
   * as the typed store calls it (the seven-argument form, no metadata); batch-once: once per command (migration
   * 0013); batch-metadata: with a command's metadata, as the command handler writes it (migration 0016).
   */
  kind: 'insert' | 'append' | 'batch' | 'batch-once' | 'batch-metadata';
  /** The table a plain INSERT writes (default events_baseline): the ablation also inserts into events itself. */
  insertInto?: 'events_baseline' | 'events';
  batchSize: number;
  /** Prefix for this thread's stream ids; each client writes its own stream. */
  streamPrefix: string;
  /** Events per second per client, or 0 for as fast as possible. */
  ratePerClient: number;
}

export interface LoadWorkerOutput {
  /** CPU time this process used, user and system, in milliseconds. */
  cpuMs: number;
  operations: number;
  events: number;
  errors: number;
  latenciesMs: number[];
}

const input = JSON.parse(process.argv[2] ?? '{}') as LoadWorkerInput;
const deadline = Date.now() + input.durationMs;
const sql = postgres(input.url, { max: input.clients, onnotice: () => {} });
const output: LoadWorkerOutput = { cpuMs: 0, operations: 0, events: 0, errors: 0, latenciesMs: [] };

async function client(index: number) {
  const stream = `${input.streamPrefix}-${index}`;
  let previous: string | null = null;
  const interval = input.ratePerClient > 0 ? 1000 / input.ratePerClient : 0;
  let next = Date.now();
  while (Date.now() < deadline) {
    if (interval > 0) {
      next += interval;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const started = performance.now();
    try {
      if (input.kind === 'insert') {
        const eventId = randomUUID();
        await sql`INSERT INTO ${sql(input.insertInto ?? 'events_baseline')} (event, event_id, decider, decider_id, data, command_id, previous_id)
          VALUES ('Happened', ${eventId}, 'Bench', ${stream}, '{"n": 1}', ${randomUUID()}, ${previous})`;
        previous = eventId;
        output.events++;
      } else if (input.kind === 'append') {
        const eventId = randomUUID();
        await sql`SELECT 1 FROM append_event('Happened', ${eventId}, 'Bench', ${stream}, '{"n": 1}', ${randomUUID()}, ${previous})`;
        previous = eventId;
        output.events++;
      } else {
        const batch = Array.from({ length: input.batchSize }, () => ({
          event: 'Happened',
          event_id: randomUUID(),
          data: { n: 1 },
        }));
        const commandId = randomUUID();
        // What the command handler stores: the command as cause and correlation, and the span that appended.
        const metadata =
          input.kind === 'batch-metadata'
            ? JSON.stringify({
                correlation_id: commandId,
                causation_id: commandId,
                traceparent: `00-${randomUUID().replaceAll('-', '')}-${randomUUID().replaceAll('-', '').slice(0, 16)}-01`,
              })
            : null;
        await sql`SELECT 1 FROM append_events('Bench', ${stream}, ${previous}, ${commandId}, ${JSON.stringify(batch)}::text::jsonb, ${input.kind === 'batch-once'}::boolean, ${metadata}::text::jsonb)`;
        previous = batch.at(-1)?.event_id ?? previous;
        output.events += batch.length;
      }
      output.operations++;
      output.latenciesMs.push(performance.now() - started);
    } catch {
      output.errors++;
    }
  }
}

await Promise.all(Array.from({ length: input.clients }, (_, i) => client(i)));
await sql.end({ timeout: 5 });
const cpu = process.cpuUsage();
output.cpuMs = (cpu.user + cpu.system) / 1000;
process.send?.(output, () => process.exit(0));
