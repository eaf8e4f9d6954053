/**
 * sql/schema.sql: the schema fstore's migrations build, read back from a migrated database, in a stable order and
 * free of anything that depends on the installation (role names, oids, the server's patch version): the tables with
 * their columns and constraints, the sequences, indexes, triggers and rules, and every function's current definition
 * as PostgreSQL prints it (pg_get_functiondef), with who may execute it. src/schema-dump.test.ts writes and compares
 * it; `pnpm check:migrations` runs that test.
 */
import type postgres from 'postgres';

const join = (parts: string[]) => parts.join('\n');

export async function schemaDump(client: postgres.Sql, migrations: readonly string[]): Promise<string> {
  // pg_get_*def qualify the names that are not on the search_path: the same one, always.
  return (await client.begin(async (sql) => {
    await sql`SET LOCAL search_path = public`;
    return dump(sql, migrations);
  })) as string;
}

async function dump(sql: postgres.TransactionSql, migrations: readonly string[]): Promise<string> {
  const out: string[] = [
    '-- fstore: the schema its migrations build, as PostgreSQL reports it from a freshly migrated database: tables,',
    "-- sequences, indexes, triggers, rules, and every function's current definition (pg_get_functiondef), in one place.",
    '-- Generated, do not edit: `pnpm check:migrations --write-schema` regenerates it (packages/schema/src/schema-dump.test.ts),',
    '-- and `pnpm check:migrations` fails when it is out of step with the migrations. Not a migration: migrate() builds',
    '-- the schema from migrations/; this file only shows the result.',
    `-- After the migrations ${migrations[0]} to ${migrations.at(-1)}; the same text on PostgreSQL 14 to 18.`,
    '',
  ];

  const tables = await sql<{ oid: number; name: string }[]>`
    SELECT c.oid::int AS oid, quote_ident(c.relname) AS name
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
    ORDER BY c.relname COLLATE "C"`;
  out.push('-- Tables', '');
  for (const table of tables) {
    const columns = await sql<{ line: string }[]>`
      SELECT format('    %I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                    coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), ''),
                    CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END) AS line
      FROM pg_attribute a
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = ${table.oid} AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`;
    // PostgreSQL 18 records NOT NULL as constraints too (contype 'n'): the columns above already say it.
    const constraints = await sql<{ line: string }[]>`
      SELECT format('    CONSTRAINT %I %s', c.conname, pg_get_constraintdef(c.oid, true)) AS line
      FROM pg_constraint c
      WHERE c.conrelid = ${table.oid} AND c.contype <> 'n'
      ORDER BY c.conname COLLATE "C"`;
    out.push(
      `CREATE TABLE public.${table.name} (`,
      [...columns, ...constraints].map((row) => row.line).join(',\n'),
      ');',
      '',
    );
  }

  const sequences = await sql<{ line: string }[]>`
    SELECT format('CREATE SEQUENCE public.%I AS %s%s;', c.relname, format_type(s.seqtypid, NULL),
                  coalesce((SELECT format(' OWNED BY public.%I.%I', t.relname, a.attname)
                            FROM pg_depend dep
                                     JOIN pg_class t ON t.oid = dep.refobjid
                                     JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
                            WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
                              AND dep.refclassid = 'pg_class'::regclass AND dep.deptype IN ('a', 'i')), '')) AS line
    FROM pg_class c
             JOIN pg_sequence s ON s.seqrelid = c.oid
    WHERE c.relnamespace = 'public'::regnamespace
    ORDER BY c.relname COLLATE "C"`;
  out.push('-- Sequences', '', ...sequences.map((row) => row.line), '');

  // Indexes that back a constraint are the constraints above.
  const indexes = await sql<{ line: string }[]>`
    SELECT pg_get_indexdef(i.indexrelid) || ';' AS line
    FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             JOIN pg_class t ON t.oid = i.indrelid
    WHERE t.relnamespace = 'public'::regnamespace
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
    ORDER BY t.relname COLLATE "C", c.relname COLLATE "C"`;
  out.push(
    '-- Indexes (those that back a constraint are the constraints above)',
    '',
    ...indexes.map((r) => r.line),
    '',
  );

  const triggers = await sql<{ line: string }[]>`
    SELECT pg_get_triggerdef(g.oid, true) || ';' AS line
    FROM pg_trigger g
             JOIN pg_class t ON t.oid = g.tgrelid
    WHERE t.relnamespace = 'public'::regnamespace AND NOT g.tgisinternal
    ORDER BY t.relname COLLATE "C", g.tgname COLLATE "C"`;
  out.push('-- Triggers', '', ...triggers.map((row) => row.line), '');

  const rules = await sql<{ line: string }[]>`
    SELECT pg_get_ruledef(r.oid, true) AS line
    FROM pg_rewrite r
             JOIN pg_class t ON t.oid = r.ev_class
    WHERE t.relnamespace = 'public'::regnamespace AND r.rulename <> '_RETURN'
    ORDER BY t.relname COLLATE "C", r.rulename COLLATE "C"`;
  out.push('-- Rules', '', ...rules.map((row) => row.line), '');

  const functions = await sql<{ signature: string; definition: string; public_execute: boolean }[]>`
    SELECT format('%s(%s)', p.proname, pg_get_function_identity_arguments(p.oid)) AS signature,
           pg_get_functiondef(p.oid)                                             AS definition,
           has_function_privilege('public', p.oid, 'EXECUTE')                     AS public_execute
    FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace
    ORDER BY p.proname COLLATE "C", pg_get_function_identity_arguments(p.oid) COLLATE "C"`;
  out.push(
    '-- Functions, by name. SECURITY DEFINER and the fixed search_path are part of each definition; EXECUTE is',
    "-- PostgreSQL's default (everyone) for the read functions and helpers, and the owner's alone for those that write",
    '-- (packages/schema/sql/least-privilege.sql grants it to an application role).',
    '',
  );
  for (const fn of functions) {
    out.push(
      `-- ${fn.signature}: EXECUTE ${fn.public_execute ? 'by everyone (PUBLIC)' : 'by its owner only, unless granted'}`,
      `${fn.definition.trimEnd()};`,
      '',
    );
  }
  return `${join(out).trimEnd()}\n`;
}
