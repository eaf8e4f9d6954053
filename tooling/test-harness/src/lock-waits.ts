/** Staging races with two real connections: find a session's backend, and wait until it waits on a lock. */
import type postgres from 'postgres';

export async function backendPid(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
  return row?.pid ?? -1;
}

/** Resolves once the backend `pid` waits on a lock (observed through `observer`); fails after 10 s. */
export async function waitUntilBlocked(observer: postgres.Sql, pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const [row] = await observer<{ waiting: boolean }[]>`
      SELECT coalesce(wait_event_type = 'Lock', false) AS waiting FROM pg_stat_activity WHERE pid = ${pid}`;
    if (row?.waiting) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`backend ${pid} never waited on a lock`);
}
