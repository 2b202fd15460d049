import { Client } from "pg";
import { SemanticCacheRepository } from "../../src/cache/semantic-cache.repository";
import { createTestEnv, startTestServer, type TestEnv, type TestServer } from "../helpers/test-app";

/**
 * The semantic lookup's plan depends on the planner's statistics of semantic_cache_entries:
 * a cache filling faster than autovacuum's rounds must not keep those of an empty table.
 */
describe("semantic cache statistics", () => {
  let env: TestEnv;
  let server: TestServer;
  let pg: Client;
  let repo: SemanticCacheRepository;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { api: false, worker: false });
    repo = new SemanticCacheRepository(server.app.db.dataSource);
    pg = new Client({ connectionString: env.databaseUrl });
    await pg.connect();
    // Only the repository analyzes here: an autovacuum round would reset the counters it reads.
    await pg.query(`ALTER TABLE semantic_cache_entries SET (autovacuum_enabled = false)`);
  });

  afterAll(async () => {
    await pg?.end();
    await server?.stop();
    await env?.cleanup();
  });

  const analyzedAt = async (): Promise<Date | null> => {
    const { rows } = await pg.query<{ at: Date | null }>(
      `SELECT last_analyze AS at FROM pg_stat_user_tables WHERE relname = 'semantic_cache_entries'`,
    );
    return rows[0]!.at;
  };

  /** Rows in one scope (what a popular model and size looks like), counted by the stats views. */
  const fill = async (n: number): Promise<void> => {
    await pg.query(
      `WITH a AS (INSERT INTO accounts (name) VALUES ('stats') RETURNING id),
            eu AS (INSERT INTO end_users (account_id, user_id) SELECT id, 'u' FROM a RETURNING id, account_id)
       INSERT INTO generations (account_id, end_user_id, user_id, media_type, prompt, model, seed,
                                priority, status, estimated_cost_usd, request_hash)
       SELECT eu.account_id, eu.id, 'u', 'IMAGE', 'p' || i, 'sim-image-fast', i, 'STANDARD',
              'SUCCEEDED', 0, md5(i::text)
         FROM eu, generate_series(1, $1) i`,
      [n],
    );
    await pg.query(
      `INSERT INTO semantic_cache_entries
              (generation_id, account_id, embedder, scope_key, model, prompt, embedding, expires_at)
       SELECT id, account_id, 'lexical-v1-3', 'scope', model, prompt,
              ('[' || random() || ',' || random() || ',1]')::vector, now() + interval '1 day'
         FROM generations g
        WHERE NOT EXISTS (SELECT 1 FROM semantic_cache_entries e WHERE e.generation_id = g.id)`,
    );
    // The cumulative statistics reach the views when a backend reports them.
    await pg.query(`SELECT pg_stat_force_next_flush()`);
  };

  it("analyzes only once the table changed by enough rows since the last time", async () => {
    await fill(100);
    // A few changed rows are not worth a new sample.
    await waitForChanges(pg, 100);
    expect(await repo.refreshStatistics()).toBe(false);
    expect(await analyzedAt()).toBeNull();

    await fill(900);
    await waitForChanges(pg, 1000);
    expect(await repo.refreshStatistics()).toBe(true);
    const first = await analyzedAt();
    expect(first).not.toBeNull();
    // Just analyzed: nothing changed since.
    expect(await repo.refreshStatistics()).toBe(false);
    expect(await analyzedAt()).toEqual(first);
  });
});

/** The stats views count changes asynchronously: wait until they show `n` changed rows. */
async function waitForChanges(pg: Client, n: number): Promise<void> {
  for (;;) {
    const { rows } = await pg.query<{ changed: string }>(
      `SELECT n_mod_since_analyze AS changed FROM pg_stat_user_tables
        WHERE relname = 'semantic_cache_entries'`,
    );
    if (Number(rows[0]?.changed ?? 0) >= n) return;
    await pg.query(`SELECT pg_stat_force_next_flush()`);
  }
}
