import { requireRole, type Viewer } from "../auth/viewer";
import type {
  LiveCounts,
  OperatorStatsRepository,
  StatsBucketRow,
} from "./operator-stats.repository";

export type StatsWindow = "HOUR" | "DAY";

/** HOUR: twelve 5-minute buckets; DAY: twenty-four hours. The last bucket is the current one. */
const WINDOWS: Record<StatsWindow, { buckets: number; bucketSeconds: number }> = {
  HOUR: { buckets: 12, bucketSeconds: 300 },
  DAY: { buckets: 24, bucketSeconds: 3600 },
};

export interface OperatorStats extends LiveCounts {
  window: StatsWindow;
  from: Date;
  to: Date;
  bucketSeconds: number;
  spendUsd: number;
  generations: number;
  cacheHits: number;
  /** Share of usage rows served from a cache (0 with none). */
  cacheHitRate: number;
  /** Share of finished generations that failed (0 with none). */
  errorRate: number;
  series: Array<Omit<StatsBucketRow, "spendUsd"> & { spendUsd: number; errorRate: number | null }>;
}

/** The operators' dashboard numbers: ADMIN only, every account together. */
export class OperatorStatsService {
  constructor(
    private readonly repo: OperatorStatsRepository,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async stats(viewer: Viewer | null, window: StatsWindow): Promise<OperatorStats> {
    requireRole(viewer, "ADMIN");
    const { buckets, bucketSeconds } = WINDOWS[window];
    const stepMs = bucketSeconds * 1000;
    // Buckets on round boundaries (UTC), so consecutive loads line up.
    const to = new Date(Math.floor(this.now().getTime() / stepMs) * stepMs + stepMs);
    const from = new Date(to.getTime() - buckets * stepMs);
    const [rows, live] = await Promise.all([
      this.repo.series({ from, to, bucketSeconds }),
      this.repo.live(),
    ]);
    const sum = (f: (r: StatsBucketRow) => number) => rows.reduce((n, r) => n + f(r), 0);
    const generations = sum((r) => r.generations);
    const cacheHits = sum((r) => r.cacheHits);
    const failed = sum((r) => r.failed);
    const finished = failed + sum((r) => r.succeeded);
    // Micro-dollars, so the total is exact before it becomes a Float on the wire.
    const spendMicros = rows.reduce((n, r) => n + Math.round(Number(r.spendUsd) * 1e6), 0);
    return {
      window,
      from,
      to,
      bucketSeconds,
      ...live,
      spendUsd: spendMicros / 1e6,
      generations,
      cacheHits,
      cacheHitRate: generations > 0 ? cacheHits / generations : 0,
      errorRate: finished > 0 ? failed / finished : 0,
      series: rows.map((r) => ({
        ...r,
        spendUsd: Number(r.spendUsd),
        errorRate: r.succeeded + r.failed > 0 ? r.failed / (r.succeeded + r.failed) : null,
      })),
    };
  }
}
