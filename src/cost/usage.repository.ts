import type { DataSource } from "typeorm";
import type { CacheHitKind } from "../entities";

export type UsageDimension = "DAY" | "MODEL" | "PROVIDER" | "USER";

export interface UsageQuery {
  from: Date;
  to: Date;
  /** Unset: every account (ADMIN). */
  accountId?: string;
  groupBy: UsageDimension[];
}

/** Money as Postgres computed it: exact decimal strings with six places ("12.340000"). */
export interface UsageTotals {
  totalCostUsd: string;
  generations: number;
  cacheHits: number;
  savedUsd: string;
}

export interface CacheHitTotals {
  kind: CacheHitKind;
  hits: number;
  savedUsd: string;
}

export interface UsageGroup extends UsageTotals {
  day?: string;
  model?: string;
  provider?: string | null;
  userId?: string;
  /** With USER: the account the user belongs to (user ids are unique within one). */
  accountId?: string;
  cacheHitsByKind: CacheHitTotals[];
  avgDurationMs: number | null;
}

export interface UsageResult {
  totals: UsageTotals & { avgDurationMs: number | null };
  byKind: CacheHitTotals[];
  rows: UsageGroup[];
}

/** Grouping columns per dimension, over the common shape of rollup and raw rows. */
const DIMENSIONS: Record<UsageDimension, string[]> = {
  DAY: ["day"],
  MODEL: ["model"],
  PROVIDER: ["provider"],
  USER: ["account_id", "user_id"],
};

/** What the driver would otherwise turn into a local-time Date. */
const OUTPUT: Partial<Record<string, string>> = { day: `to_char(day, 'YYYY-MM-DD') AS day` };

const KINDS: CacheHitKind[] = ["EXACT", "INFLIGHT", "SEMANTIC"];

/** The shape both sources are brought to before the final grouping. */
const ROLLUP_SUMS = `generations, cost_usd, cache_hits, saved_usd, exact_hits, exact_saved_usd,
  semantic_hits, semantic_saved_usd, inflight_hits, inflight_saved_usd, paid_duration_ms,
  paid_timed`;

/**
 * The rollup that serves a grouping: the end user's grain only when USER is asked for, the
 * account's (far smaller) otherwise.
 */
function rollupFor(groupBy: UsageDimension[]): { table: string; columns: string } {
  return groupBy.includes("USER")
    ? {
        table: "usage_daily_users",
        columns: `day, account_id, user_id, model, provider, ${ROLLUP_SUMS}`,
      }
    : {
        table: "usage_daily",
        columns: `day, account_id, NULL::text AS user_id, model, provider, ${ROLLUP_SUMS}`,
      };
}

/** One usage_records row in the rollup's shape. */
const RAW_AS_PART = `(created_at AT TIME ZONE 'UTC')::date AS day, account_id, user_id, model,
  provider, 1 AS generations, cost_usd, cached::int AS cache_hits, saved_usd,
  (cached AND cache_hit_kind = 'EXACT')::int AS exact_hits,
  CASE WHEN cached AND cache_hit_kind = 'EXACT' THEN saved_usd ELSE 0 END AS exact_saved_usd,
  (cached AND cache_hit_kind = 'SEMANTIC')::int AS semantic_hits,
  CASE WHEN cached AND cache_hit_kind = 'SEMANTIC' THEN saved_usd ELSE 0 END AS semantic_saved_usd,
  (cached AND cache_hit_kind = 'INFLIGHT')::int AS inflight_hits,
  CASE WHEN cached AND cache_hit_kind = 'INFLIGHT' THEN saved_usd ELSE 0 END AS inflight_saved_usd,
  CASE WHEN NOT cached THEN duration_ms ELSE 0 END AS paid_duration_ms,
  (NOT cached AND duration_ms IS NOT NULL)::int AS paid_timed`;

const money = (expr: string) => `COALESCE(sum(${expr}), 0)::numeric(20, 6)::text`;

const SUMS = `${money("cost_usd")} AS total_cost_usd,
  COALESCE(sum(generations), 0)::int AS generations,
  COALESCE(sum(cache_hits), 0)::int AS cache_hits,
  ${money("saved_usd")} AS saved_usd,
  COALESCE(sum(exact_hits), 0)::int AS exact_hits, ${money("exact_saved_usd")} AS exact_saved_usd,
  COALESCE(sum(semantic_hits), 0)::int AS semantic_hits,
  ${money("semantic_saved_usd")} AS semantic_saved_usd,
  COALESCE(sum(inflight_hits), 0)::int AS inflight_hits,
  ${money("inflight_saved_usd")} AS inflight_saved_usd,
  (sum(paid_duration_ms)::numeric / NULLIF(sum(paid_timed), 0))::float8 AS avg_duration_ms`;

interface SumsRow {
  total_cost_usd: string;
  generations: number;
  cache_hits: number;
  saved_usd: string;
  exact_hits: number;
  exact_saved_usd: string;
  semantic_hits: number;
  semantic_saved_usd: string;
  inflight_hits: number;
  inflight_saved_usd: string;
  avg_duration_ms: number | null;
}

interface GroupRow extends SumsRow {
  is_total: boolean;
  day?: string;
  model?: string;
  provider?: string | null;
  user_id?: string;
  account_id?: string;
}

const DAY_MS = 86_400_000;

/** The whole UTC days inside [from, to), if any, and the partial days around them. */
export function splitRange(
  from: Date,
  to: Date,
): { days: { from: string; to: string } | null; edges: Array<[Date, Date]> } {
  const firstDay = Math.ceil(from.getTime() / DAY_MS) * DAY_MS;
  const endDay = Math.floor(to.getTime() / DAY_MS) * DAY_MS;
  if (firstDay >= endDay) return { days: null, edges: [[from, to]] };
  const edges: Array<[Date, Date]> = [];
  if (from.getTime() < firstDay) edges.push([from, new Date(firstDay)]);
  if (endDay < to.getTime()) edges.push([new Date(endDay), to]);
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  return { days: { from: iso(firstDay), to: iso(endDay) }, edges };
}

/** The report's one SQL statement (exported for EXPLAIN in the bench). */
export function buildUsageQuery(q: UsageQuery): { text: string; params: unknown[] } {
  const params: unknown[] = [];
  const param = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const account = q.accountId ? ` AND account_id = ${param(q.accountId)}` : "";
  const { days, edges } = splitRange(q.from, q.to);
  const parts: string[] = [];
  if (days) {
    const rollup = rollupFor(q.groupBy);
    parts.push(
      `SELECT ${rollup.columns} FROM ${rollup.table}
        WHERE day >= ${param(days.from)}::date AND day < ${param(days.to)}::date${account}`,
    );
  }
  for (const [a, b] of edges) {
    parts.push(
      `SELECT ${RAW_AS_PART} FROM usage_records
        WHERE created_at >= ${param(a)} AND created_at < ${param(b)}${account}`,
    );
  }
  const columns = q.groupBy.flatMap((d) => DIMENSIONS[d]);
  const grouping =
    columns.length > 0
      ? `GROUPING(${columns.join(", ")}) <> 0 AS is_total,
         ${columns.map((c) => OUTPUT[c] ?? c).join(", ")},`
      : `true AS is_total,`;
  // A key whose generations were all deleted may keep rollup rows that sum to zero (see
  // migration 1764360000000): not a group.
  const groupBy =
    columns.length > 0
      ? `GROUP BY GROUPING SETS ((${columns.join(", ")}), ())
         HAVING GROUPING(${columns.join(", ")}) <> 0 OR sum(generations) <> 0
         ORDER BY ${columns.join(", ")}`
      : "";
  return {
    text: `WITH parts AS (${parts.join(" UNION ALL ")})
     SELECT ${grouping} ${SUMS} FROM parts ${groupBy}`,
    params,
  };
}

/**
 * Usage sums in one SQL statement. Whole UTC days come from a daily rollup (`usage_daily`, or
 * `usage_daily_users` for USER; kept by triggers on usage_records, see migration
 * 1764320000001); the partial days at the edges of
 * the range come from `usage_records` itself, on its (account_id, created_at) or (created_at)
 * index. So any [from, to) is exact, and a month costs one index range of rollup rows plus at
 * most two days of raw rows. One GROUPING SETS pass yields the rows and the totals together.
 */
export class UsageRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Folds the shards of `usage_daily` for the days before today (UTC) into shard 0, and
   * deletes rows whose sums are all zero (keys whose generations were all deleted); returns
   * how many rows it removed. Rows are locked in key order, the order the triggers lock them
   * in, so a writer and the compaction cannot deadlock; and each row's condition is checked
   * again on the version it waited for, so what a writer just added is folded, never dropped.
   */
  async compactRollup(): Promise<number> {
    const past = `day < (now() AT TIME ZONE 'UTC')::date`;
    return this.db.transaction(async (m) => {
      await m.query(
        `SELECT 1 FROM usage_daily WHERE ${past} AND shard <> 0
          ORDER BY ${ROLLUP_KEY_ORDER} FOR UPDATE`,
      );
      const [folded] = (await m.query(
        `WITH moved AS (
           DELETE FROM usage_daily WHERE ${past} AND shard <> 0 RETURNING *),
         kept AS (
           INSERT INTO usage_daily AS d (account_id, day, model, provider, media_type, shard,
                                         ${ROLLUP_SUMS})
           SELECT account_id, day, model, provider, media_type, 0,
                  ${SUM_COLUMNS.map((c) => `sum(${c})`).join(", ")}
             FROM moved GROUP BY account_id, day, model, provider, media_type
            ORDER BY account_id, day, model, provider, media_type
           ON CONFLICT (account_id, day, model, provider, media_type, shard) DO UPDATE SET
             ${SUM_COLUMNS.map((c) => `${c} = d.${c} + excluded.${c}`).join(", ")})
         SELECT count(*)::int AS n FROM moved`,
      )) as Array<{ n: number }>;
      const [dropped] = (await m.query(
        `WITH gone AS (
           DELETE FROM usage_daily WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM usage_daily WHERE ${past} AND generations <= 0 AND ${ALL_ZERO}
              ORDER BY ${ROLLUP_KEY_ORDER} FOR UPDATE))
           RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
      )) as Array<{ n: number }>;
      return folded!.n + dropped!.n;
    });
  }

  async report(q: UsageQuery): Promise<UsageResult> {
    const { text, params } = buildUsageQuery(q);
    const raw = (await this.db.query(text, params)) as GroupRow[];

    const totalsRow = raw.find((r) => r.is_total);
    if (!totalsRow) throw new Error("usage query returned no totals row");
    const rows = raw
      .filter((r) => !r.is_total)
      .map((r): UsageGroup => ({
        day: r.day,
        model: r.model,
        provider: r.provider,
        userId: r.user_id,
        accountId: r.account_id,
        ...totalsOf(r),
        cacheHitsByKind: kindsOf(r),
        avgDurationMs: r.avg_duration_ms,
      }));
    return {
      totals: { ...totalsOf(totalsRow), avgDurationMs: totalsRow.avg_duration_ms },
      byKind: kindsOf(totalsRow),
      rows,
    };
  }
}

/** The rollup's key columns, in the order writers lock its rows. */
const ROLLUP_KEY_ORDER = "account_id, day, model, provider, media_type, shard";
const SUM_COLUMNS = ROLLUP_SUMS.split(",").map((c) => c.trim());
/** Sums that are all zero: a row that adds nothing. */
const ALL_ZERO = SUM_COLUMNS.map((c) => `${c} = 0`).join(" AND ");

function totalsOf(r: SumsRow): UsageTotals {
  return {
    totalCostUsd: r.total_cost_usd,
    generations: r.generations,
    cacheHits: r.cache_hits,
    savedUsd: r.saved_usd,
  };
}

/** The kinds that had hits, in a stable order. */
function kindsOf(r: SumsRow): CacheHitTotals[] {
  const by: Record<CacheHitKind, [number, string]> = {
    EXACT: [r.exact_hits, r.exact_saved_usd],
    INFLIGHT: [r.inflight_hits, r.inflight_saved_usd],
    SEMANTIC: [r.semantic_hits, r.semantic_saved_usd],
  };
  return KINDS.filter((k) => by[k][0] > 0).map((k) => ({
    kind: k,
    hits: by[k][0],
    savedUsd: by[k][1],
  }));
}
