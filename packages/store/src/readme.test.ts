/**
 * The README's @fstore/store example, run as it is written, as its own process against a fresh database.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createTestDatabase } from '@fstore/testing';
import { afterAll, expect, test } from 'vitest';

const database = await createTestDatabase({ from: 'empty' });
afterAll(() => database.drop());

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const block = readme.split('<!-- readme-store:start -->')[1]?.split('<!-- readme-store:end -->')[0] ?? '';
const code = block.match(/```ts\n([\s\S]*?)```/)?.[1] ?? '';

test('the README example declares events, handles commands and loads the state', async () => {
  expect(code).toContain('createCommandHandler');
  // Inside the package, so that its imports resolve as they would in an application.
  const file = fileURLToPath(new URL(`../readme-example-${process.pid}.ts`, import.meta.url));
  writeFileSync(file, code);
  try {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--conditions=@fstore/source', '--import', tsx, file],
      { env: { ...process.env, DATABASE_URL: database.url }, timeout: 60_000 },
    );
    const [state, events] = stdout.trim().split('\n');
    expect(state).toBe("{ status: 'placed', items: 2 }");
    expect(events).toMatch(/^\d+ OrderCreated, \d+ ItemAdded, \d+ OrderPlaced$/);
  } finally {
    rmSync(file, { force: true });
  }
});
