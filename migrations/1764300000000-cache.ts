import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Caching: the exact key and in-flight key on generations, how a cached generation was
 * served, per-account opt-out of semantic matching, and the semantic cache's prompt
 * embeddings (pgvector).
 */
export class Cache1764300000000 implements MigrationInterface {
  name = "Cache1764300000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE EXTENSION IF NOT EXISTS vector`);

    // cache_key: the exact-cache key of a paid generation whose result may be reused (null for
    // BYPASS, cached rows and purged results). inflight_key: the same key on a DEFAULT-mode
    // generation that identical requests may attach to while it runs. inflight_of: on an
    // attached generation, the one it waits for.
    await q.query(`
      ALTER TABLE generations
        ADD COLUMN cache_key text,
        ADD COLUMN inflight_key text,
        ADD COLUMN inflight_of uuid REFERENCES generations(id) ON DELETE SET NULL,
        ADD COLUMN cache_hit jsonb`);
    // At most one unfinished generation per in-flight key: the race between identical
    // requests is settled by this index, in every process at once.
    await q.query(
      `CREATE UNIQUE INDEX generations_inflight_key ON generations (inflight_key)
         WHERE inflight_key IS NOT NULL AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')`,
    );
    await q.query(
      `CREATE INDEX generations_inflight_recent_idx ON generations (inflight_key, created_at)
         WHERE inflight_key IS NOT NULL`,
    );
    await q.query(
      `CREATE INDEX generations_cache_key_idx ON generations (cache_key, completed_at)
         WHERE cache_key IS NOT NULL AND status = 'SUCCEEDED'`,
    );
    await q.query(
      `CREATE INDEX generations_inflight_of_idx ON generations (inflight_of)
         WHERE inflight_of IS NOT NULL`,
    );

    await q.query(`ALTER TABLE accounts ADD COLUMN semantic_cache boolean NOT NULL DEFAULT true`);
    await q.query(`ALTER TABLE usage_records ADD COLUMN cache_hit_kind text
      CHECK (cache_hit_kind IN ('EXACT', 'SEMANTIC', 'INFLIGHT'))`);

    // One row per paid generation whose prompt may answer similar prompts. `embedding` has no
    // fixed size so that embedders of any size share the table; each embedder gets a partial
    // HNSW index over its own cast (pgvector's recipe for mixed dimensions).
    await q.query(`
      CREATE TABLE semantic_cache_entries (
        generation_id uuid PRIMARY KEY REFERENCES generations(id) ON DELETE CASCADE,
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        embedder text NOT NULL,
        scope_key text NOT NULL,
        model text NOT NULL,
        prompt text NOT NULL,
        embedding vector NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      )`);
    await q.query(
      `CREATE INDEX semantic_cache_scope_idx ON semantic_cache_entries (embedder, scope_key, expires_at)`,
    );
    await q.query(`CREATE INDEX semantic_cache_model_idx ON semantic_cache_entries (model)`);
    await q.query(`CREATE INDEX semantic_cache_account_idx ON semantic_cache_entries (account_id)`);
    await q.query(`CREATE INDEX semantic_cache_expires_idx ON semantic_cache_entries (expires_at)`);
    // The local default embedder's space; others are indexed at start (SemanticCache.prepare).
    await q.query(
      `CREATE INDEX semantic_cache_hnsw_lexical_v1_384 ON semantic_cache_entries
         USING hnsw ((embedding::vector(384)) vector_cosine_ops)
         WHERE embedder = 'lexical-v1-384'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS semantic_cache_entries`);
    await q.query(`ALTER TABLE usage_records DROP COLUMN IF EXISTS cache_hit_kind`);
    await q.query(`ALTER TABLE accounts DROP COLUMN IF EXISTS semantic_cache`);
    await q.query(`DROP INDEX IF EXISTS generations_inflight_of_idx`);
    await q.query(`DROP INDEX IF EXISTS generations_cache_key_idx`);
    await q.query(`DROP INDEX IF EXISTS generations_inflight_recent_idx`);
    await q.query(`DROP INDEX IF EXISTS generations_inflight_key`);
    await q.query(`
      ALTER TABLE generations
        DROP COLUMN IF EXISTS cache_hit,
        DROP COLUMN IF EXISTS inflight_of,
        DROP COLUMN IF EXISTS inflight_key,
        DROP COLUMN IF EXISTS cache_key`);
  }
}
