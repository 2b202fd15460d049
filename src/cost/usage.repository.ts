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

export interface UsageTotals {
  totalCostUsd: number;
  generations: number;
  cacheHits: number;
  savedUsd: number;
}

export interface UsageGroup extends UsageTotals {
  day?: string;
  model?: string;
  provider?: string | null;
  userId?: string;
  accountId?: string;
  avgDurationMs: number | null;
}

export interface CacheHitTotals {
  kind: CacheHitKind;
  hits: number;
  savedUsd: number;
}

/** Column expressions per dimension; USER is only unique within an account. */
const DIMENSIONS: Record<UsageDimension, { select: string[]; group: string[] }> = {
  DAY: {
    select: [`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day`],
    group: [`to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`],
  },
  MODEL: { select: ["model"], group: ["model"] },
  PROVIDER: { select: ["provider"], group: ["provider"] },
  USER: { select: ["account_id", "user_id"], group: ["account_id", "user_id"] },
};

interface SumsRow {
  total_cost_usd: string | null;
  generations: number;
  cache_hits: number;
  saved_usd: string | null;
}

const SUMS = `COALESCE(sum(cost_usd), 0) AS total_cost_usd, count(*)::int AS generations,
              (count(*) FILTER (WHERE cached))::int AS cache_hits,
              COALESCE(sum(saved_usd), 0) AS saved_usd`;

/** Sums over usage rows (one per finished generation), in SQL, on the (account, time) index. */
export class UsageRepository {
  constructor(private readonly db: DataSource) {}

  async report(
    q: UsageQuery,
  ): Promise<{ totals: UsageTotals; byKind: CacheHitTotals[]; rows: UsageGroup[] }> {
    const params: unknown[] = [q.from, q.to];
    let where = `created_at >= $1 AND created_at < $2`;
    if (q.accountId) {
      params.push(q.accountId);
      where += ` AND account_id = $3`;
    }
    const [totals] = (await this.db.query(
      `SELECT ${SUMS} FROM usage_records WHERE ${where}`,
      params,
    )) as SumsRow[];
    const byKind = (await this.db.query(
      `SELECT cache_hit_kind AS kind, count(*)::int AS hits, COALESCE(sum(saved_usd), 0) AS saved_usd
         FROM usage_records WHERE ${where} AND cached AND cache_hit_kind IS NOT NULL
        GROUP BY cache_hit_kind ORDER BY cache_hit_kind`,
      params,
    )) as Array<{ kind: CacheHitKind; hits: number; saved_usd: string }>;
    let rows: UsageGroup[] = [];
    if (q.groupBy.length > 0) {
      const dims = q.groupBy.map((d) => DIMENSIONS[d]);
      const select = dims.flatMap((d) => d.select).join(", ");
      const group = dims.flatMap((d) => d.group).join(", ");
      const raw = (await this.db.query(
        `SELECT ${select}, ${SUMS},
                avg(duration_ms) FILTER (WHERE NOT cached) AS avg_duration_ms
           FROM usage_records WHERE ${where}
          GROUP BY ${group} ORDER BY ${group}`,
        params,
      )) as Array<
        SumsRow & {
          day?: string;
          model?: string;
          provider?: string | null;
          user_id?: string;
          account_id?: string;
          avg_duration_ms: string | null;
        }
      >;
      rows = raw.map((r) => ({
        day: r.day,
        model: r.model,
        provider: r.provider,
        userId: r.user_id,
        accountId: r.account_id,
        ...sums(r),
        avgDurationMs: r.avg_duration_ms === null ? null : Number(r.avg_duration_ms),
      }));
    }
    return {
      totals: sums(totals!),
      byKind: byKind.map((k) => ({ kind: k.kind, hits: k.hits, savedUsd: Number(k.saved_usd) })),
      rows,
    };
  }
}

function sums(r: SumsRow): UsageTotals {
  return {
    totalCostUsd: Number(r.total_cost_usd ?? 0),
    generations: r.generations,
    cacheHits: r.cache_hits,
    savedUsd: Number(r.saved_usd ?? 0),
  };
}
