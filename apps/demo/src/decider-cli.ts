/**
 * The command side as a process of its own: `pnpm --filter @fstore/demo decider` against DATABASE_URL.
 *
 *   decider [--orders 200] [--producers 4] [--restaurants 3] [--run ID]   generated commands, as in the demo
 *   decider --stdin                                                        one JSON command a line:
 *     {"decider": "Restaurant", "id": "r1", "command": {"kind": "CreateRestaurant", "name": "Chez Ada", "menu": [...]}}
 *     {"decider": "Order", "id": "o1", "command": {"kind": "MarkOrderPrepared", "by": "Ada"}, "commandId": "<uuid>"}
 *   (a commandId, optional, applies the command once however often the line is sent: an idempotency key)
 *
 * Prints what it did as one JSON line at the end ({"run", "stats"}), or one line per command with --stdin.
 * Exit codes: 0 done, 1 it could not run (one line on stderr says why), 2 the command line is wrong.
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { createCommandHandler, createEventStore } from '@fstore/store';
import { createPostgresClient } from '@fstore/store/postgres';
import { UsageError } from '@fstore/stream';
import { drizzle } from 'drizzle-orm/postgres-js';
import { failWithOneLine, wholeNumber } from './command-line.js';
import { type OrderCommand, orderDecider, orderEvents } from './domain/order.js';
import { CommandRejected } from './domain/rejections.js';
import { type RestaurantCommand, restaurantDecider, restaurantEvents } from './domain/restaurant.js';
import { newStats, produce } from './producers.js';
import { setUpDatabase } from './setup.js';

const usage = `usage: pnpm --filter @fstore/demo decider [--orders 200] [--producers 4] [--restaurants 3] [--run ID]
       pnpm --filter @fstore/demo decider --stdin     (one JSON command a line)

The demo's command side against the database at DATABASE_URL (it runs fstore's migrations there first): generated
restaurant and order commands, as in the demo, or the commands read from stdin. Prints what it did as JSON lines.`;
failWithOneLine('decider', 'pnpm --filter @fstore/demo decider --help');

const { values } = parseArgs({
  args: process.argv.slice(2).filter((arg) => arg !== '--'),
  options: {
    orders: { type: 'string', default: '200' },
    producers: { type: 'string', default: '4' },
    restaurants: { type: 'string', default: '3' },
    run: { type: 'string' },
    stdin: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const counts = {
  orders: wholeNumber('orders', values.orders),
  producers: wholeNumber('producers', values.producers),
  restaurants: wholeNumber('restaurants', values.restaurants),
};
const url = process.env.DATABASE_URL;
if (!url) throw new UsageError('set DATABASE_URL to the database to run on');
await setUpDatabase(url);
const sql = createPostgresClient(url, { max: 8, onnotice: () => {} });
const db = drizzle(sql);
const interrupted = new AbortController();
process.on('SIGINT', () => interrupted.abort()).on('SIGTERM', () => interrupted.abort());

try {
  if (values.stdin) {
    const restaurant = createCommandHandler(createEventStore(db, restaurantEvents), restaurantDecider);
    const order = createCommandHandler(createEventStore(db, orderEvents), orderDecider);
    for await (const line of createInterface({ input: process.stdin })) {
      if (interrupted.signal.aborted) break;
      if (line.trim() === '') continue;
      try {
        const { decider, id, command, commandId } = JSON.parse(line) as {
          decider: string;
          id: string;
          command: unknown;
          commandId?: string;
        };
        const once = commandId === undefined ? {} : { commandId };
        const result =
          decider === 'Restaurant'
            ? await restaurant(id, command as RestaurantCommand, once)
            : decider === 'Order'
              ? await order(id, command as OrderCommand, once)
              : undefined;
        if (!result) throw new CommandRejected(`unknown decider ${decider}`);
        console.log(
          JSON.stringify({
            ok: true,
            id,
            events: result.events.map((e) => e.type),
            commandId: result.commandId,
            replayed: result.replayed,
          }),
        );
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        console.log(JSON.stringify({ ok: false, rejected: error instanceof CommandRejected, reason }));
      }
    }
  } else {
    const run = values.run ?? `run${randomBytes(4).toString('hex')}`;
    const stats = newStats();
    await produce({
      db,
      ...counts,
      run,
      stats,
      signal: interrupted.signal,
    });
    console.log(JSON.stringify({ run, stats }));
  }
} finally {
  await sql.end({ timeout: 5 });
}
