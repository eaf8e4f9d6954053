/**
 * The SQL walkthrough of docs/sql-api.md (fstore-sql's README examples), run verbatim and in order on a fresh
 * database, with the results the page describes; and the package README's example. Both are read from the markdown
 * itself, so the documentation cannot drift from what the SQL does.
 */
import { createTestDatabase } from '@fstore/test-harness';
import { readmeBlocks, runReadmeExample } from '@fstore/test-harness/readme';
import { afterAll, expect, test } from 'vitest';

const db = await createTestDatabase();
afterAll(() => db.drop());

const blocks = readmeBlocks('sql', 'sql', 'docs/sql-api.md');
const statements = (block: string) =>
  block
    .split(/;\s*$/m)
    .map((statement) => statement.trim())
    .filter((statement) => statement !== '');
type Row = Record<string, unknown>;
const run = async (index: number): Promise<Row[][]> => {
  const results: Row[][] = [];
  for (const statement of statements(blocks[index] ?? ''))
    results.push([...(await db.sql.unsafe(statement))]);
  return results;
};

const first = 'f156a3c4-9bd8-11ed-a8fc-0242ac120002';
const second = '2ac37f68-9d66-11ed-a8fc-0242ac120002';
const locksOf = (deciderId: string) =>
  db.sql<
    { offset: string; last_offset: string }[]
  >`SELECT * FROM locks WHERE view = 'view1' AND decider_id = ${deciderId}`;

test('docs/sql-api.md has the six SQL examples of fstore-sql', () => {
  expect(blocks).toHaveLength(6);
});

test('the examples run in order, with the results docs/sql-api.md describes', async () => {
  // 1. two event types registered
  const registered = await run(0);
  expect(registered.map(([row]) => [row?.decider, row?.event])).toEqual([
    ['decider1', 'event1'],
    ['decider1', 'event2'],
  ]);

  // 2. two events, the second chained to the first
  const [[e1], [e2]] = (await run(1)) as [[Row], [Row]];
  expect(e1).toMatchObject({ event: 'event1', decider_id: first, previous_id: null, offset: '1' });
  expect(e2).toMatchObject({ event: 'event2', decider_id: first, previous_id: e1.event_id, offset: '2' });

  // 3. the stream, in order
  const [loaded] = await run(2);
  expect(loaded?.map((row) => row.event_id)).toEqual([e1.event_id, e2.event_id]);

  // 4. the view; no lock row yet: the first consumer that asks creates it
  const [[view]] = (await run(3)) as [[Row]];
  expect(view).toMatchObject({ view: 'view1', pooling_delay_ms: '500' });
  expect(await locksOf(first)).toEqual([]);

  // 5. another stream; the appends write the events only
  const [[f1], [f2]] = (await run(4)) as [[Row], [Row]];
  expect(f2).toMatchObject({ decider_id: second, previous_id: f1.event_id });
  expect(await locksOf(second)).toEqual([]);

  // 6. stream_events advances the view (both streams get their lock, each before its first event), then leases the
  // first stream's first event, which is acknowledged
  const [streamed, acked] = await run(5);
  expect(streamed?.map((row) => [row.decider_id, row.offset])).toEqual([[first, '1']]);
  expect(acked).toMatchObject([{ view: 'view1', decider_id: first, last_offset: '1' }]);
  expect(await locksOf(first)).toMatchObject([{ offset: '2', last_offset: '1' }]);
  expect(await locksOf(second)).toMatchObject([{ offset: String(f2.offset), last_offset: '0' }]);
});

test("the package README's example migrates an empty database and appends from SQL", async () => {
  const empty = await createTestDatabase({ from: 'empty' });
  try {
    const stdout = await runReadmeExample(
      'schema',
      new URL('..', import.meta.url),
      { DATABASE_URL: empty.url },
      'packages/schema/README.md',
    );
    expect(stdout.trim()).toBe('null OrderCreated');
  } finally {
    await empty.drop();
  }
});
