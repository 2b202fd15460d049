import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Daily usage rollups: exact sums of `usage_records` per UTC day, kept in step by
 * statement-level triggers, at two grains:
 * - `usage_daily`: per (account, day, model, provider, media type). Tiny (tens of rows per
 *   account and day whatever the number of end users): every report not grouped by USER.
 * - `usage_daily_users`: the same with the end user in the key, for reports grouped by USER.
 *   It compresses only by the generations a user makes per model and day.
 *
 * The triggers live in Postgres because every insert path (single rows, INSERT ... SELECT of
 * attached generations, cache hits inside a CTE) must count, whoever writes them. They use
 * transition tables: a bulk insert is folded into one grouped upsert per rollup, not one per
 * row. UPDATE, DELETE (including the cascades from accounts, end users and generations) and
 * TRUNCATE are handled too, so the rollups stay equal to sums over `usage_records` whatever
 * happens to it.
 *
 * No foreign key to accounts: the rollups are derived data, and a cascade that removed their
 * rows first would leave the DELETE trigger nothing to subtract from (it only updates).
 */
export const SUMS = [
  "generations",
  "cost_usd",
  "cache_hits",
  "saved_usd",
  "exact_hits",
  "exact_saved_usd",
  "semantic_hits",
  "semantic_saved_usd",
  "inflight_hits",
  "inflight_saved_usd",
  "paid_duration_ms",
  "paid_timed",
];

export const ROLLUPS = [
  { table: "usage_daily", key: ["account_id", "day", "model", "provider", "media_type"] },
  {
    table: "usage_daily_users",
    key: ["account_id", "day", "user_id", "model", "provider", "media_type"],
  },
];

export const DAY = `(created_at AT TIME ZONE 'UTC')::date`;

/** Rollup key and sums of a set of usage_records rows (a table or a transition table). */
export function grouped(source: string, key: string[]): string {
  const keyExprs = key.map((k) => (k === "day" ? DAY : k));
  return `
    SELECT ${keyExprs.map((e, i) => `${e} AS ${key[i]}`).join(", ")},
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
     GROUP BY ${keyExprs.join(", ")}`;
}

export const columns = (key: string[]) => [...key, ...SUMS].join(", ");

/** Subtracts the old rows' sums, then drops keys left with no generation. */
export function subtract(table: string, key: string[]): string {
  const match = key
    .map((k) => (k === "provider" ? `d.${k} IS NOT DISTINCT FROM o.${k}` : `d.${k} = o.${k}`))
    .join(" AND ");
  return `
    UPDATE ${table} d SET ${SUMS.map((s) => `${s} = d.${s} - o.${s}`).join(", ")}
      FROM (${grouped("old_rows", key)}) o
     WHERE ${match};
    DELETE FROM ${table} d
     WHERE d.generations <= 0
       AND (d.account_id, d.day) IN (SELECT DISTINCT account_id, ${DAY} FROM old_rows);`;
}

/**
 * Adds the new rows' sums, in key order, so that two bulk inserts touching the same keys lock
 * them in the same order instead of deadlocking.
 */
export function add(table: string, key: string[]): string {
  return `
    INSERT INTO ${table} AS d (${columns(key)})
    ${grouped("new_rows", key)} ORDER BY ${key.map((_k, i) => i + 1).join(", ")}
    ON CONFLICT (${key.join(", ")}) DO UPDATE SET
      ${SUMS.map((s) => `${s} = d.${s} + excluded.${s}`).join(", ")};`;
}

/** The trigger function: what to run for the rows a statement removed, and for those it added. */
export function applyFunction(forOldRows: string, forNewRows: string): string {
  return `
    CREATE OR REPLACE FUNCTION usage_daily_apply() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        ${forOldRows}
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        ${forNewRows}
      END IF;
      RETURN NULL;
    END $$`;
}

export class UsageRollup1764320000001 implements MigrationInterface {
  name = "UsageRollup1764320000001";

  async up(q: QueryRunner): Promise<void> {
    // Writers wait until the triggers and the backfill commit together (the backfill reads
    // every row once per rollup: seconds per million rows).
    await q.query(`LOCK TABLE usage_records IN SHARE ROW EXCLUSIVE MODE`);
    for (const { table, key } of ROLLUPS) {
      await q.query(`
        CREATE TABLE ${table} (
          account_id uuid NOT NULL,
          day date NOT NULL,
          ${key.includes("user_id") ? "user_id text NOT NULL," : ""}
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
        `CREATE UNIQUE INDEX ${table}_key ON ${table} (${key.join(", ")}) NULLS NOT DISTINCT`,
      );
      // ADMIN reports over every account.
      await q.query(`CREATE INDEX ${table}_day_idx ON ${table} (day)`);
    }
    // ADMIN reports read partial days at the edges of a range from usage_records; without
    // this they would scan every account's rows.
    await q.query(`CREATE INDEX usage_records_created_idx ON usage_records (created_at)`);

    await q.query(
      applyFunction(
        ROLLUPS.map((r) => subtract(r.table, r.key)).join("\n"),
        ROLLUPS.map((r) => add(r.table, r.key)).join("\n"),
      ),
    );
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
        TRUNCATE ${ROLLUPS.map((r) => r.table).join(", ")};
        RETURN NULL;
      END $$`);
    await q.query(`
      CREATE TRIGGER usage_daily_on_truncate AFTER TRUNCATE ON usage_records
        FOR EACH STATEMENT EXECUTE FUNCTION usage_daily_truncate()`);

    // Backfill in the same transaction as the triggers: no row is counted twice or missed.
    for (const { table, key } of ROLLUPS) {
      await q.query(`INSERT INTO ${table} (${columns(key)}) ${grouped("usage_records", key)}`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const op of ["insert", "update", "delete", "truncate"]) {
      await q.query(`DROP TRIGGER IF EXISTS usage_daily_on_${op} ON usage_records`);
    }
    await q.query(`DROP FUNCTION IF EXISTS usage_daily_apply()`);
    await q.query(`DROP FUNCTION IF EXISTS usage_daily_truncate()`);
    await q.query(`DROP INDEX IF EXISTS usage_records_created_idx`);
    for (const { table } of ROLLUPS) await q.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
