/** For erasure tests: which tables of a database hold a text anywhere in a row (every schema but the catalogs). */
import type postgres from 'postgres';

export async function tablesHolding(sql: postgres.Sql, needle: string): Promise<string[]> {
  const tables = await sql<{ schema: string; name: string }[]>`
    SELECT table_schema AS schema, table_name AS name
    FROM information_schema.tables
    WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`;
  const holding: string[] = [];
  for (const table of tables) {
    const [row] = await sql.unsafe<{ found: boolean }[]>(
      `SELECT EXISTS (SELECT 1 FROM "${table.schema}"."${table.name}" t WHERE t::text LIKE $1) AS found`,
      [`%${needle}%`],
    );
    if (row?.found) holding.push(`${table.schema}.${table.name}`);
  }
  return holding;
}
