import type { MigrationInterface, QueryRunner } from "typeorm";
import {
  ROLLUPS,
  SUMS,
  add,
  applyFunction,
  columns,
  grouped,
  subtract,
} from "./1764320000001-usage-rollup";

/** Rows `usage_daily` may hold per key and day: writers pick one by their backend. */
export const USAGE_SHARDS = 16;

const KEY = ["account_id", "day", "model", "provider", "media_type"];
const SHARD = `(pg_backend_pid() % ${USAGE_SHARDS})::smallint`;

/**
 * `usage_daily` split into shards. Every transaction that finished a generation of one account,
 * model and provider on one day updated the same rollup row and held its lock until it
 * committed, so those commits (each a WAL flush) went one after another. Now each writer upserts
 * into the row of its shard (its backend's pid modulo USAGE_SHARDS): connections of different
 * shards commit side by side. Readers sum over the shards, as the reports did already (they
 * group).
 *
 * Updates and deletes of usage_records add their negated sums to the writer's shard instead of
 * subtracting from a row and deleting it once empty: with shards, no one row holds a key's
 * total, so "empty" is a property of the sum, and a delete decided on one row could drop what
 * another transaction just added to it. A key whose generations were all deleted keeps rows that
 * sum to zero until `UsageRepository.compactRollup` folds past days into shard 0 and removes
 * rows of zeros (each by a condition on the row itself, which Postgres checks again on the
 * latest version of a row it waited for). The end-user rollup stays as it was: it contends only
 * per user.
 */
export class UsageShards1764360000000 implements MigrationInterface {
  name = "UsageShards1764360000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`LOCK TABLE usage_records IN SHARE ROW EXCLUSIVE MODE`);
    await q.query(`ALTER TABLE usage_daily ADD COLUMN shard smallint NOT NULL DEFAULT 0`);
    await q.query(`DROP INDEX usage_daily_key`);
    await q.query(
      `CREATE UNIQUE INDEX usage_daily_key ON usage_daily (${KEY.join(", ")}, shard) NULLS NOT DISTINCT`,
    );
    // What compactRollup looks for: rows of shards to fold, rows of zeros to drop.
    await q.query(
      `CREATE INDEX usage_daily_unfolded ON usage_daily (day) WHERE shard <> 0 OR generations <= 0`,
    );
    const users = ROLLUPS.find((r) => r.table === "usage_daily_users")!;
    await q.query(
      applyFunction(
        `${upsertIntoShard("old_rows", -1)}\n${subtract(users.table, users.key)}`,
        `${upsertIntoShard("new_rows", 1)}\n${add(users.table, users.key)}`,
      ),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`LOCK TABLE usage_records IN SHARE ROW EXCLUSIVE MODE`);
    await q.query(`
      CREATE TEMPORARY TABLE usage_daily_folded ON COMMIT DROP AS
        SELECT ${KEY.join(", ")}, ${SUMS.map((s) => `sum(${s}) AS ${s}`).join(", ")}
          FROM usage_daily GROUP BY ${KEY.join(", ")} HAVING sum(generations) > 0`);
    await q.query(`DELETE FROM usage_daily`);
    await q.query(`DROP INDEX usage_daily_unfolded`);
    await q.query(`DROP INDEX usage_daily_key`);
    await q.query(`ALTER TABLE usage_daily DROP COLUMN shard`);
    await q.query(
      `CREATE UNIQUE INDEX usage_daily_key ON usage_daily (${KEY.join(", ")}) NULLS NOT DISTINCT`,
    );
    await q.query(
      `INSERT INTO usage_daily (${columns(KEY)}) SELECT ${columns(KEY)} FROM usage_daily_folded`,
    );
    await q.query(
      applyFunction(
        ROLLUPS.map((r) => subtract(r.table, r.key)).join("\n"),
        ROLLUPS.map((r) => add(r.table, r.key)).join("\n"),
      ),
    );
  }
}

/**
 * Adds the rows' sums (sign 1) or takes them away (sign -1) in this writer's shard, key by key
 * in key order (concurrent bulk writes lock rows in the same order: no deadlock).
 */
function upsertIntoShard(source: string, sign: 1 | -1): string {
  const signed = (s: string) => (sign === 1 ? s : `-${s}`);
  return `
    INSERT INTO usage_daily AS d (${columns(KEY)}, shard)
    SELECT ${KEY.join(", ")}, ${SUMS.map((s) => `${signed(s)}`).join(", ")}, ${SHARD}
      FROM (${grouped(source, KEY)}) g
     ORDER BY ${KEY.map((_k, i) => i + 1).join(", ")}
    ON CONFLICT (${KEY.join(", ")}, shard) DO UPDATE SET
      ${SUMS.map((s) => `${s} = d.${s} + excluded.${s}`).join(", ")};`;
}
