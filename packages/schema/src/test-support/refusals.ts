/**
 * Statements the SQL API must refuse, and the checks that they were: the expected SQLSTATE, nothing written (every
 * row of fstore's tables compared before and after, view_frontiers included: advance_view writes it) and the
 * connection still usable. Shared by the bad-input
 * catalogue (bad-input.test.ts) and the acknowledgements that must not move a stream (acknowledgements.test.ts).
 */
import type postgres from 'postgres';
import { expect } from 'vitest';
import { failureOf } from './sql-client.js';

/** A refusal: its SQLSTATE and, where it tells causes apart, the constraint it names. */
export interface Refusal {
  code: string;
  constraint?: string;
}

export const NOT_NULL: Refusal = { code: '23502' };
export const INVALID: Refusal = { code: '22023' };
export const LEASE_LOST: Refusal = { code: '55P03', constraint: 'locks_lease_held' };
export const NO_DATA: Refusal = { code: 'P0002' };

/**
 * Everything fstore's tables hold, as digests (and whether the NOTIFY trigger is there): equal before and after means
 * nothing was written.
 */
export async function tableContents(sql: postgres.Sql) {
  const [row] = await sql`
      SELECT (SELECT count(*)::int FROM events)                                                      AS events,
             (SELECT count(*)::int FROM deciders)                                                    AS deciders,
             (SELECT count(*)::int FROM views)                                                       AS views,
             (SELECT count(*)::int FROM locks)                                                       AS locks,
             (SELECT count(*)::int FROM parked_events)                                               AS parked,
             (SELECT count(*)::int FROM view_frontiers)                                              AS frontiers,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t."offset"), '')) FROM events t)  AS events_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.decider, t.event, t.event_version), ''))
              FROM deciders t)                                                                       AS deciders_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view), '')) FROM views t)      AS views_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view, t.decider_id), '')) FROM locks t)
                                                                                                     AS locks_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view, t."offset"), '')) FROM parked_events t)
                                                                                                     AS parked_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.view), '')) FROM view_frontiers t)
                                                                                                     AS frontiers_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.decider, t.decider_id, t.version), ''))
              FROM snapshots t)                                                                      AS snapshots_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.key_id), '')) FROM subject_keys t)
                                                                                                     AS keys_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.forgotten_at, t.subject), ''))
              FROM subject_erasures t)                                                               AS erasures_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t."offset"), '')) FROM archived_events t)
                                                                                                     AS archived_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.decider, t.decider_id), ''))
              FROM archived_streams t)                                                               AS archived_streams_md5,
             (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.removed_at, t.closed_before), ''))
              FROM retention_runs t)                                                                 AS retention_md5,
             (SELECT count(*)::int FROM pg_trigger WHERE tgname = 't_notify_events_appended')        AS wakeups`;
  return row;
}

/**
 * The checks for one test file: `conn` is the connection under test (a single one, so that a failure which broke
 * it shows), `tables` a pool on the same database that reads what fstore's tables hold.
 */
export function refusalChecks(tables: postgres.Sql, conn: postgres.Sql) {
  const contents = () => tableContents(tables);

  async function usable(sql: postgres.Sql = conn) {
    expect(await sql`SELECT 1 AS ok`).toEqual([{ ok: 1 }]);
  }

  /** Runs `statement` on `conn`, expects `expected`, and checks that nothing changed. */
  async function expectRefused(
    statement: string,
    args: (string | null)[],
    expected: Refusal & { message?: RegExp },
  ) {
    const before = await contents();
    const failure = await failureOf(() => conn.unsafe(statement, args));
    expect(failure.code, `${statement} ${JSON.stringify(args).slice(0, 200)}: ${failure.message}`).toBe(
      expected.code,
    );
    if (expected.constraint) expect(failure.constraint).toBe(expected.constraint);
    if (expected.message) expect(failure.message).toMatch(expected.message);
    expect(await contents(), 'nothing written').toEqual(before);
    await usable();
  }

  return { contents, usable, expectRefused };
}
