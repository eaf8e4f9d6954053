/**
 * A7: what personal data costs an append. The typed store appends one event per command from 8 concurrent writers,
 * each on a stream of its own, alternating rounds: an event type with two personal fields (encrypted with the
 * subject's key, which one more round trip fetches) against the same payload declared without them.
 */
import { randomUUID } from 'node:crypto';
import { createEventStore, defineEvents, event } from '@fstore/store';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { type BenchContext, type Figure, median } from '../context.js';

type Profile = { customerId: string; email: string; name: string; plan: string };
const plain = defineEvents('PlainProfile', { Updated: event<Profile>() });
const personal = defineEvents('PersonalProfile', {
  Updated: event<Profile, 'email' | 'name'>({
    personal: { subject: (data) => data.customerId, fields: ['email', 'name'] },
  }),
});

export async function personalDataScenarios(ctx: BenchContext): Promise<Figure[]> {
  const url = await ctx.freshDatabase('personal');
  const sql = postgres(url, { max: 8, onnotice: () => {} });
  try {
    const db = drizzle(sql);
    const stores = { plain: createEventStore(db, plain), personal: createEventStore(db, personal) };
    await stores.plain.register();
    await stores.personal.register();
    async function rate(kind: 'plain' | 'personal') {
      const store = stores[kind] as ReturnType<typeof createEventStore<typeof plain>>;
      const deadline = Date.now() + ctx.durationMs;
      let appended = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const customerId = `customer-${randomUUID()}`;
          let previous: string | null = null;
          while (Date.now() < deadline) {
            const data = {
              customerId,
              email: `${randomUUID()}@example.com`,
              name: 'Ada Lovelace',
              plan: 'pro',
            };
            const [stored] = await store.append(customerId, [{ type: 'Updated', data }], {
              expectedLastEventId: previous,
            });
            previous = stored?.eventId ?? previous;
            appended++;
          }
        }),
      );
      return appended / (ctx.durationMs / 1000);
    }
    ctx.log('A7: appends with personal fields against the same without, 8 writers through the store');
    const rates = { plain: [] as number[], personal: [] as number[] };
    for (let round = 0; round < ctx.rounds; round++) {
      rates.plain.push(await rate('plain'));
      rates.personal.push(await rate('personal'));
    }
    return [
      {
        scenario: 'A7',
        case: 'store.append, 1 event with 2 personal fields (AES-256-GCM, the key fetched per append), 8 writers',
        unit: 'events/s',
        value: median(rates.personal),
        baseline: { label: 'the same payload declared without personal fields', value: median(rates.plain) },
        ratio: median(rates.personal) / median(rates.plain),
        note: 'report only: event types without personal fields pay nothing',
      },
    ];
  } finally {
    await sql.end({ timeout: 5 });
  }
}
