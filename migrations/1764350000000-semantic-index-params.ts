import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The semantic cache's HNSW indexes with m = 12, ef_construction = 48 instead of pgvector's
 * defaults (16, 64): every paid generation inserts into one, and a smaller graph costs less to
 * insert into while lookups find the same entries (bench/README.md, `semantic-index`).
 *
 * Every embedder's index is rebuilt, not only the default one's (`ensureIndex` never changes an
 * index that exists). The rebuild runs in the migration's transaction, so not CONCURRENTLY:
 * writes to the table and lookups that use the index wait for it (about 3 s per 20,000 entries
 * on two cores). To avoid the wait, run beforehand, per index, `ALTER INDEX … SET (m = 12,
 * ef_construction = 48)` and `REINDEX INDEX CONCURRENTLY …`: this migration skips an index that
 * already has these parameters.
 */
export class SemanticIndexParams1764350000000 implements MigrationInterface {
  name = "SemanticIndexParams1764350000000";

  async up(q: QueryRunner): Promise<void> {
    for (const index of await hnswIndexes(q)) {
      if (sameOptions(index.options, ["m=12", "ef_construction=48"])) continue;
      await q.query(`ALTER INDEX "${index.name}" SET (m = 12, ef_construction = 48)`);
      await q.query(`REINDEX INDEX "${index.name}"`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const index of await hnswIndexes(q)) {
      if (sameOptions(index.options, [])) continue;
      await q.query(`ALTER INDEX "${index.name}" RESET (m, ef_construction)`);
      await q.query(`REINDEX INDEX "${index.name}"`);
    }
  }
}

/** The HNSW indexes of semantic_cache_entries, with their storage parameters. */
async function hnswIndexes(q: QueryRunner): Promise<Array<{ name: string; options: string[] }>> {
  const rows = (await q.query(
    `SELECT c.relname AS name, coalesce(c.reloptions, '{}') AS options
       FROM pg_index i
       JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_am am ON am.oid = c.relam
      WHERE i.indrelid = 'semantic_cache_entries'::regclass AND am.amname = 'hnsw'
      ORDER BY 1`,
  )) as Array<{ name: string; options: string[] }>;
  return rows;
}

function sameOptions(options: string[], wanted: string[]): boolean {
  return options.length === wanted.length && wanted.every((o) => options.includes(o));
}
