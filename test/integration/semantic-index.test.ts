import type { DataSource } from "typeorm";
import { SemanticIndexParams1764350000000 } from "../../migrations/1764350000000-semantic-index-params";
import { HNSW_BUILD, SemanticCacheRepository } from "../../src/cache/semantic-cache.repository";
import { openDatabase, type Database } from "../../src/infra/data-source";
import { createTestDatabase } from "../helpers/postgres";

/** Every embedder's HNSW index is built with the same parameters, old ones by the migration. */
describe("the semantic cache's HNSW parameters", () => {
  let db: Database;
  let ds: DataSource;
  let drop: () => Promise<void>;
  const built = [`m=${HNSW_BUILD.m}`, `ef_construction=${HNSW_BUILD.efConstruction}`];

  beforeAll(async () => {
    const created = await createTestDatabase();
    drop = created.drop;
    db = await openDatabase({ url: created.url, dataDir: "", poolSize: 2 });
    ds = db.dataSource;
  });

  afterAll(async () => {
    await db?.close();
    await drop?.();
  });

  /** Storage parameters of each HNSW index of semantic_cache_entries, by name. */
  const hnswOptions = async (): Promise<Record<string, string[] | null>> => {
    const rows = (await ds.query(
      `SELECT c.relname AS name, c.reloptions AS options
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_am am ON am.oid = c.relam
        WHERE i.indrelid = 'semantic_cache_entries'::regclass AND am.amname = 'hnsw'`,
    )) as Array<{ name: string; options: string[] | null }>;
    return Object.fromEntries(rows.map((r) => [r.name, r.options]));
  };

  const runMigration = async (direction: "up" | "down"): Promise<void> => {
    const runner = ds.createQueryRunner();
    try {
      await runner.startTransaction();
      await new SemanticIndexParams1764350000000()[direction](runner);
      await runner.commitTransaction();
    } finally {
      await runner.release();
    }
  };

  it("builds the default embedder's index with them", async () => {
    expect(await hnswOptions()).toEqual({ semantic_cache_hnsw_lexical_v1_384: built });
    const [{ indexdef }] = (await ds.query(
      `SELECT indexdef FROM pg_indexes WHERE indexname = 'semantic_cache_hnsw_lexical_v1_384'`,
    )) as [{ indexdef: string }];
    expect(indexdef).toContain(
      `USING hnsw (((embedding)::vector(384)) vector_cosine_ops) WITH (m='12', ef_construction='48')`,
    );
  });

  it("builds another embedder's index with them when it is missing", async () => {
    await new SemanticCacheRepository(ds).ensureIndex("openai:text-embedding-3-small:512", 512);
    expect(await hnswOptions()).toEqual({
      semantic_cache_hnsw_lexical_v1_384: built,
      semantic_cache_hnsw_openai_text_embedding_3_small_512: built,
    });
  });

  it("goes down to pgvector's defaults and up again, for every embedder's index", async () => {
    await runMigration("down");
    expect(await hnswOptions()).toEqual({
      semantic_cache_hnsw_lexical_v1_384: null,
      semantic_cache_hnsw_openai_text_embedding_3_small_512: null,
    });
    await runMigration("up");
    expect(await hnswOptions()).toEqual({
      semantic_cache_hnsw_lexical_v1_384: built,
      semantic_cache_hnsw_openai_text_embedding_3_small_512: built,
    });
  });

  it("leaves the indexes as they are when run again", async () => {
    const before = (await ds.query(
      `SELECT relfilenode FROM pg_class WHERE relname LIKE 'semantic_cache_hnsw_%' ORDER BY relname`,
    )) as unknown[];
    await runMigration("up");
    expect(
      await ds.query(
        `SELECT relfilenode FROM pg_class WHERE relname LIKE 'semantic_cache_hnsw_%' ORDER BY relname`,
      ),
    ).toEqual(before);
  });
});
