import type { DataSource } from "typeorm";

export interface StatsRange {
  from: Date;
  to: Date;
  bucketSeconds: number;
}

/** One time bucket; money as Postgres computed it (exact decimal strings). */
export interface StatsBucketRow {
  start: Date;
  spendUsd: string;
  generations: number;
  cacheHits: number;
  succeeded: number;
  failed: number;
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
}

export interface LiveCounts {
  queued: number;
  processing: number;
}

/**
 * What the operators' dashboard charts, across every account, straight from Postgres (the
 * source of truth, so every api replica answers the same): spend and cache hits from
 * usage_records, outcomes and end-to-end latency from generations by completion time.
 */
export class OperatorStatsRepository {
  constructor(private readonly db: DataSource) {}

  async series(range: StatsRange): Promise<StatsBucketRow[]> {
    const step = `${range.bucketSeconds} seconds`;
    const rows: Array<Record<string, unknown>> = await this.db.query(
      `WITH buckets AS (
         SELECT generate_series($1::timestamptz, $2::timestamptz - $3::interval, $3::interval) AS start
       ),
       finished AS (
         SELECT date_bin($3::interval, completed_at, $1::timestamptz) AS start,
                count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded,
                count(*) FILTER (WHERE status = 'FAILED') AS failed,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
                  FILTER (WHERE status = 'SUCCEEDED' AND NOT cached) * 1000 AS p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - created_at))
                  FILTER (WHERE status = 'SUCCEEDED' AND NOT cached) * 1000 AS p95
           FROM generations
          WHERE completed_at >= $1 AND completed_at < $2
          GROUP BY 1
       ),
       spend AS (
         SELECT date_bin($3::interval, created_at, $1::timestamptz) AS start,
                sum(cost_usd) AS spend,
                count(*) AS generations,
                count(*) FILTER (WHERE cached) AS cache_hits
           FROM usage_records
          WHERE created_at >= $1 AND created_at < $2
          GROUP BY 1
       )
       SELECT b.start,
              coalesce(s.spend, 0)::numeric(14, 6)::text AS spend_usd,
              coalesce(s.generations, 0)::int AS generations,
              coalesce(s.cache_hits, 0)::int AS cache_hits,
              coalesce(f.succeeded, 0)::int AS succeeded,
              coalesce(f.failed, 0)::int AS failed,
              f.p50::float8 AS p50,
              f.p95::float8 AS p95
         FROM buckets b
         LEFT JOIN finished f ON f.start = b.start
         LEFT JOIN spend s ON s.start = b.start
        ORDER BY b.start`,
      [range.from.toISOString(), range.to.toISOString(), step],
    );
    return rows.map((r) => ({
      start: new Date(r.start as string | Date),
      spendUsd: String(r.spend_usd),
      generations: Number(r.generations),
      cacheHits: Number(r.cache_hits),
      succeeded: Number(r.succeeded),
      failed: Number(r.failed),
      p50LatencyMs: r.p50 == null ? null : Number(r.p50),
      p95LatencyMs: r.p95 == null ? null : Number(r.p95),
    }));
  }

  /** Generations waiting (queued or batched) and running now, service-wide. */
  async live(): Promise<LiveCounts> {
    const [row]: Array<{ queued: number; processing: number }> = await this.db.query(
      `SELECT count(*) FILTER (WHERE status IN ('QUEUED', 'BATCHED'))::int AS queued,
              count(*) FILTER (WHERE status = 'PROCESSING')::int AS processing
         FROM generations
        WHERE status IN ('QUEUED', 'BATCHED', 'PROCESSING')`,
    );
    return { queued: Number(row?.queued ?? 0), processing: Number(row?.processing ?? 0) };
  }
}
