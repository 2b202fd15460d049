import type { DataSource } from "typeorm";
import { UNPREPARED } from "../infra/prepared-statements";

export interface SemanticEntry {
  generationId: string;
  accountId: string;
  embedder: string;
  scopeKey: string;
  model: string;
  prompt: string;
  embedding: number[];
  expiresAt: Date;
}

export interface SemanticMatch {
  generationId: string;
  prompt: string;
  similarity: number;
}

// Any constant works; it only has to be the same in every gengate process.
const INDEX_LOCK = 74_656_002;

/**
 * The build parameters of every embedder's HNSW index (pgvector's defaults: m = 16,
 * ef_construction = 64). A paid generation's entry is an insert into the graph, whose cost grows
 * with both; at these, lookups at the default `hnsw.ef_search` give the same hits
 * (bench/semantic-index.ts, bench/README.md). Migration 1764350000000 set them on existing indexes.
 */
export const HNSW_BUILD = { m: 12, efConstruction: 48 } as const;

/** `refreshStatistics` analyzes after this many changed rows, and this share of the table. */
const STATS_MIN_CHANGES = 500;
const STATS_CHANGED_SHARE = 0.2;

/**
 * The semantic cache's rows in Postgres (pgvector). One table for every embedder: each
 * embedder's vectors are compared only with its own, through a partial HNSW index on the
 * cast to its dimensions, so the query must use exactly that cast.
 */
export class SemanticCacheRepository {
  constructor(private readonly db: DataSource) {}

  /** Creates the embedder's HNSW index when it is missing (the default one comes with the migration). */
  async ensureIndex(embedder: string, dimensions: number): Promise<void> {
    assertDimensions(dimensions);
    const name = `semantic_cache_hnsw_${embedder.toLowerCase().replace(/[^a-z0-9]+/g, "_")}`.slice(
      0,
      63,
    );
    await this.db.transaction(async (m) => {
      await m.query("SELECT pg_advisory_xact_lock($1)", [INDEX_LOCK]);
      await m.query(
        `CREATE INDEX IF NOT EXISTS ${name} ON semantic_cache_entries
           USING hnsw ((embedding::vector(${dimensions})) vector_cosine_ops)
           WITH (m = ${HNSW_BUILD.m}, ef_construction = ${HNSW_BUILD.efConstruction})
           WHERE embedder = ${quoteLiteral(embedder)}`,
      );
    });
  }

  /**
   * The closest live entry in the scope, from an account that shares its prompts, for an
   * account that wants semantic hits; null when there is none or the asking account opted out.
   */
  async nearest(q: {
    accountId: string;
    embedder: string;
    scopeKey: string;
    embedding: number[];
  }): Promise<SemanticMatch | null> {
    const dims = q.embedding.length;
    assertDimensions(dims);
    const cast = `vector(${dims})`;
    // One statement, no transaction: the iterative scan the filter needs is a session setting
    // of every connection (see `openDatabase`). Planned for its values every time: whether the
    // HNSW index or the scope's index is the better path depends on how many entries the scope
    // holds, which a generic plan would not know.
    const rows = (await this.db.query(
      `${UNPREPARED}
       SELECT e.generation_id, e.prompt,
              1 - (e.embedding::${cast} <=> $1::${cast}) AS similarity
         FROM semantic_cache_entries e
         JOIN accounts a ON a.id = e.account_id AND a.semantic_cache
        WHERE e.embedder = $2 AND e.scope_key = $3 AND e.expires_at > now()
          AND EXISTS (SELECT 1 FROM accounts me WHERE me.id = $4 AND me.semantic_cache)
        ORDER BY e.embedding::${cast} <=> $1::${cast}
        LIMIT 1`,
      [toVector(q.embedding), q.embedder, q.scopeKey, q.accountId],
    )) as Array<{ generation_id: string; prompt: string; similarity: number }>;
    const row = rows[0];
    return row
      ? { generationId: row.generation_id, prompt: row.prompt, similarity: Number(row.similarity) }
      : null;
  }

  /** Stores an entry unless the account opted out (checked in the same statement). */
  async insert(e: SemanticEntry): Promise<void> {
    await this.db.query(
      `INSERT INTO semantic_cache_entries
              (generation_id, account_id, embedder, scope_key, model, prompt, embedding, expires_at)
       SELECT $1, $2, $3, $4, $5, $6, $7::vector, $8
        WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2 AND semantic_cache)
       ON CONFLICT (generation_id) DO UPDATE
          SET embedding = EXCLUDED.embedding, embedder = EXCLUDED.embedder,
              scope_key = EXCLUDED.scope_key, expires_at = EXCLUDED.expires_at`,
      [
        e.generationId,
        e.accountId,
        e.embedder,
        e.scopeKey,
        e.model,
        e.prompt,
        toVector(e.embedding),
        e.expiresAt,
      ],
    );
  }

  async deleteWhere(filter: {
    model?: string;
    generationId?: string;
    accountId?: string;
  }): Promise<number> {
    const clauses: string[] = [];
    const params: unknown[] = [];
    for (const [column, value] of [
      ["model", filter.model],
      ["generation_id", filter.generationId],
      ["account_id", filter.accountId],
    ] as const) {
      if (value === undefined) continue;
      params.push(value);
      clauses.push(`${column} = $${params.length}`);
    }
    if (clauses.length === 0) throw new Error("deleteWhere needs a filter");
    const [, count] = (await this.db.query(
      `DELETE FROM semantic_cache_entries WHERE ${clauses.join(" AND ")}`,
      params,
    )) as [unknown, number];
    return count;
  }

  /**
   * Takes the planner's statistics again when the table changed much since they were taken;
   * returns whether it did. `nearest` relies on them to choose between the HNSW index (for a
   * scope that holds many entries) and the scope index (for one that holds few). A cache that
   * fills faster than autovacuum's rounds (a minute apart) otherwise keeps the statistics of
   * a nearly empty table, and every lookup sorts its whole scope: a cost that grows with it.
   */
  async refreshStatistics(): Promise<boolean> {
    const [row] = (await this.db.query(
      `SELECT n_live_tup::float8 AS live, n_mod_since_analyze::float8 AS changed
         FROM pg_stat_user_tables WHERE relid = 'semantic_cache_entries'::regclass`,
    )) as Array<{ live: number; changed: number }>;
    if (!row || row.changed < Math.max(STATS_MIN_CHANGES, STATS_CHANGED_SHARE * row.live)) {
      return false;
    }
    await this.db.query(`ANALYZE semantic_cache_entries`);
    return true;
  }

  /** Drops expired entries, oldest first, a batch at a time. */
  async deleteExpired(limit = 1000): Promise<number> {
    const [, count] = (await this.db.query(
      `DELETE FROM semantic_cache_entries WHERE generation_id IN (
         SELECT generation_id FROM semantic_cache_entries
          WHERE expires_at <= now() ORDER BY expires_at LIMIT $1)`,
      [limit],
    )) as [unknown, number];
    return count;
  }
}

function toVector(v: number[]): string {
  for (const x of v)
    if (!Number.isFinite(x)) throw new Error("embedding holds a non-finite number");
  return `[${v.join(",")}]`;
}

function assertDimensions(d: number): void {
  // pgvector's HNSW index takes at most 2,000 dimensions of `vector`.
  if (!Number.isInteger(d) || d < 1 || d > 2000) {
    throw new Error(`embedding dimensions must be from 1 to 2000 (got ${d})`);
  }
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
