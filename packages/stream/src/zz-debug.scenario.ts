import { createEventStore } from '@fstore/store';
import { createTestDatabase } from '@fstore/testing';
import { drizzle } from 'drizzle-orm/postgres-js';
import { test } from 'vitest';
import { counterEvents, createReadModel, describeView, produce, sleep, startWorker } from './test-support/scenarios.js';

test('debug', async () => {
  const database = await createTestDatabase();
  await createReadModel(database.sql);
  const store = createEventStore(drizzle(database.connect({ max: 10 })), counterEvents);
  await store.register();
  await produce(store, { streams: Array.from({length: 20}, (_, i) => `before-${String(i).padStart(2,'0')}`), eventsPerStream: 10, maxEventsPerAppend: 3, deadline: Date.now() + 30_000 });
  const w = startWorker({ url: database.url, view: 'v', name: 'doomed', hangAtOffset: 106 });
  await sleep(6000);
  console.log(w.lines.length, w.lines.slice(-5));
  console.log(await describeView(database.sql, 'v'));
  console.log(await database.sql`SELECT count(*), count(distinct "offset") FROM projected`);
  console.log(await database.sql`SELECT pid, state, wait_event, left(query, 80) q, now()-xact_start age FROM pg_stat_activity WHERE datname = current_database()`);
  console.log(w.stderr());
  w.child.kill('SIGKILL');
}, 60_000);
