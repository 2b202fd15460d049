import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Daily usage rollup: per (account, UTC day, end user, model, provider, media type) sums of
 * `usage_records`, kept in step by statement-level triggers, so that a usage report reads a
 * few rows per user and day instead of one row per generation.
 *
 * The triggers live in Postgres because every insert path (single rows, INSERT ... SELECT of
 * attached generations, cache hits inside a CTE) must count, whoever writes them. They use
 * transition tables: a bulk insert is folded into one grouped upsert, not one per row. UPDATE,
 * DELETE (including the cascades from accounts, end users and generations) and TRUNCATE are
 * handled too, so the rollup stays equal to a sum over `usage_records` whatever happens to it.
 *
 * No foreign key to accounts: the rollup is derived data, and a cascade that removed its rows
 * first would leave the DELETE trigger nothing to subtract from (it only updates existing rows).
 */
const COLUMNS = `account_id, day, user_id, model, provider, media_type, generations, cost_usd,
  cache_hits, saved_usd, exact_hits, exact_saved_usd, semantic_hits, semantic_saved_usd,
  inflight_hits, inflight_saved_usd, paid_duration_ms, paid_timed`;

/** Rollup key and sums of a set of usage_records rows (a table or a transition table). */
function grouped(source: string): string {
  return `
    SELECT account_id, (created_at AT TIME ZONE 'UTC')::date AS day, user_id, model, provider,
           media_type,
           count(*) AS generations,
           sum(cost_usd) AS cost_usd,
           count(*) FILTER (WHERE cached) AS cache_hits,
           sum(saved_usd) AS saved_usd,
           count(*) FILTER (WHERE cached AND cache_hit_kind = 'EXACT') AS exact_hits,
           COALESCE(sum(saved_usd) FILTER (WHERE cached AND cache_hit_kind = 'EXACT'), 0)
             AS exact_saved_usd,
           count(*) FILTER (WHERE cached AND cache_hit_kind = 'SEMANTIC') AS semantic_hits,
           COALESCE(sum(saved_usd) FILTER (WHERE cached AND cache_hit_kind = 'SEMANTIC'), 0)
             AS semantic_saved_usd,
           count(*) FILTER (WHERE cached AND cache_hit_kind = 'INFLIGHT') AS inflight_hits,
           COALESCE(sum(saved_usd) FILTER (WHERE cached AND cache_hit_kind = 'INFLIGHT'), 0)
             AS inflight_saved_usd,
           COALESCE(sum(duration_ms) FILTER (WHERE NOT cached), 0) AS paid_duration_ms,
           count(duration_ms) FILTER (WHERE NOT cached) AS paid_timed
      FROM ${source}
     GROUP BY account_id, (created_at AT TIME ZONE 'UTC')::date, user_id, model, provider,
              media_type`;
}

export class UsageRollup1764320000001 implements MigrationInterface {
  name = "UsageRollup1764320000001";

  async up(q: QueryRunner): Promise<void> {
    // Writers wait until the triggers and the backfill commit together (the backfill reads
    // every row once: seconds per million rows).
    await q.query(`LOCK TABLE usage_records IN SHARE ROW EXCLUSIVE MODE`);
    await q.query(`
      CREATE TABLE usage_daily (
        account_id uuid NOT NULL,
        day date NOT NULL,
        user_id text NOT NULL,
        model text NOT NULL,
        provider text,
        media_type text NOT NULL,
        generations bigint NOT NULL,
        cost_usd numeric NOT NULL,
        cache_hits bigint NOT NULL,
        saved_usd numeric NOT NULL,
        exact_hits bigint NOT NULL,
        exact_saved_usd numeric NOT NULL,
        semantic_hits bigint NOT NULL,
        semantic_saved_usd numeric NOT NULL,
        inflight_hits bigint NOT NULL,
        inflight_saved_usd numeric NOT NULL,
        -- Sum and count of duration_ms over uncached rows that have one: avgDurationMs.
        paid_duration_ms bigint NOT NULL,
        paid_timed bigint NOT NULL
      )`);
    // The upsert target, and the index of a partner's report (account, day range). A cached
    // row has no provider of its own when the source had none: NULL is a key value here.
    await q.query(
      `CREATE UNIQUE INDEX usage_daily_key ON usage_daily
         (account_id, day, user_id, model, provider, media_type) NULLS NOT DISTINCT`,
    );
    // ADMIN reports over every account.
    await q.query(`CREATE INDEX usage_daily_day_idx ON usage_daily (day)`);
    // ADMIN reports read partial days at the edges of a range from usage_records; without
    // this they would scan every account's rows.
    await q.query(`CREATE INDEX usage_records_created_idx ON usage_records (created_at)`);

    // One grouped delta per statement. Rows are upserted in key order so that two bulk
    // inserts touching the same keys lock them in the same order instead of deadlocking.
    await q.query(`
      CREATE FUNCTION usage_daily_apply() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
          UPDATE usage_daily d SET
                 generations = d.generations - o.generations,
                 cost_usd = d.cost_usd - o.cost_usd,
                 cache_hits = d.cache_hits - o.cache_hits,
                 saved_usd = d.saved_usd - o.saved_usd,
                 exact_hits = d.exact_hits - o.exact_hits,
                 exact_saved_usd = d.exact_saved_usd - o.exact_saved_usd,
                 semantic_hits = d.semantic_hits - o.semantic_hits,
                 semantic_saved_usd = d.semantic_saved_usd - o.semantic_saved_usd,
                 inflight_hits = d.inflight_hits - o.inflight_hits,
                 inflight_saved_usd = d.inflight_saved_usd - o.inflight_saved_usd,
                 paid_duration_ms = d.paid_duration_ms - o.paid_duration_ms,
                 paid_timed = d.paid_timed - o.paid_timed
            FROM (${grouped("old_rows")}) o
           WHERE d.account_id = o.account_id AND d.day = o.day AND d.user_id = o.user_id
             AND d.model = o.model AND d.provider IS NOT DISTINCT FROM o.provider
             AND d.media_type = o.media_type;
          DELETE FROM usage_daily d
           WHERE d.generations <= 0
             AND (d.account_id, d.day) IN (SELECT DISTINCT account_id, (created_at AT TIME ZONE 'UTC')::date
                                             FROM old_rows);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
          INSERT INTO usage_daily AS d (${COLUMNS})
          ${grouped("new_rows")} ORDER BY 1, 2, 3, 4, 5, 6
          ON CONFLICT (account_id, day, user_id, model, provider, media_type) DO UPDATE SET
                 generations = d.generations + excluded.generations,
                 cost_usd = d.cost_usd + excluded.cost_usd,
                 cache_hits = d.cache_hits + excluded.cache_hits,
                 saved_usd = d.saved_usd + excluded.saved_usd,
                 exact_hits = d.exact_hits + excluded.exact_hits,
                 exact_saved_usd = d.exact_saved_usd + excluded.exact_saved_usd,
                 semantic_hits = d.semantic_hits + excluded.semantic_hits,
                 semantic_saved_usd = d.semantic_saved_usd + excluded.semantic_saved_usd,
                 inflight_hits = d.inflight_hits + excluded.inflight_hits,
                 inflight_saved_usd = d.inflight_saved_usd + excluded.inflight_saved_usd,
                 paid_duration_ms = d.paid_duration_ms + excluded.paid_duration_ms,
                 paid_timed = d.paid_timed + excluded.paid_timed;
        END IF;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER usage_daily_on_insert AFTER INSERT ON usage_records
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_apply()`);
    await q.query(`
      CREATE TRIGGER usage_daily_on_update AFTER UPDATE ON usage_records
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_apply()`);
    await q.query(`
      CREATE TRIGGER usage_daily_on_delete AFTER DELETE ON usage_records
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_apply()`);
    await q.query(`
      CREATE FUNCTION usage_daily_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        TRUNCATE usage_daily;
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER usage_daily_on_truncate AFTER TRUNCATE ON usage_records
        FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_truncate()`);

    // Backfill in the same transaction as the triggers: no row is counted twice or missed.
    await q.query(`INSERT INTO usage_daily (${COLUMNS}) ${grouped("usage_records")}`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TRIGGER IF EXISTS usage_daily_on_insert ON usage_records`);
    await q.query(`DROP TRIGGER IF EXISTS usage_daily_on_update ON usage_records`);
    await q.query(`DROP TRIGGER IF EXISTS usage_daily_on_delete ON usage_records`);
    await q.query(`DROP TRIGGER IF EXISTS usage_daily_on_truncate ON usage_records`);
    await q.query(`DROP FUNCTION IF EXISTS usage_daily_apply()`);
    await q.query(`DROP FUNCTION IF EXISTS usage_daily_truncate()`);
    await q.query(`DROP INDEX IF EXISTS usage_records_created_idx`);
    await q.query(`DROP TABLE IF EXISTS usage_daily`);
  }
}
