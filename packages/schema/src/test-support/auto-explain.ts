/**
 * auto_explain's plans of every statement a session sends, nested ones included (the statements inside fstore's
 * PL/pgSQL functions), with the rows each step really read: how the plan tests see what a function runs.
 */
import type { TestDatabase } from '@fstore/test-harness';
import type postgres from 'postgres';

/** Runs `run` on a session of its own with auto_explain on; resolves to the plans, one text each. */
export async function explainedPlans(
  database: TestDatabase,
  run: (explained: postgres.Sql) => Promise<unknown>,
): Promise<string[]> {
  const plans: string[] = [];
  const explained = database.connect({
    max: 1,
    onnotice: (notice) => {
      if (String(notice.message).includes('Query Text')) plans.push(String(notice.message));
    },
  });
  try {
    await explained`LOAD 'auto_explain'`;
    await explained`SET auto_explain.log_min_duration = 0`;
    await explained`SET auto_explain.log_analyze = on`;
    await explained`SET auto_explain.log_nested_statements = on`;
    await explained`SET client_min_messages = log`;
    await run(explained);
  } finally {
    await explained.end();
  }
  return plans;
}
