import type { DataSource } from "typeorm";

export interface PassCount {
  /** Attempts whose outputs the quality gate judged. */
  judged: number;
  passed: number;
}

/** Judged attempts per model over a recent window, from the reports kept on attempts. */
export class PassRateRepository {
  constructor(private readonly db: DataSource) {}

  async recent(windowHours: number): Promise<Map<string, PassCount>> {
    // Served by attempts_quality_recent_idx (ended_at, model) WHERE quality IS NOT NULL.
    const rows = (await this.db.query(
      `SELECT model, count(*)::int AS judged,
              count(*) FILTER (WHERE (quality->>'passed')::boolean)::int AS passed
         FROM attempts
        WHERE quality IS NOT NULL AND ended_at > now() - make_interval(secs => $1)
        GROUP BY model`,
      [windowHours * 3600],
    )) as Array<{ model: string; judged: number; passed: number }>;
    return new Map(rows.map((r) => [r.model, { judged: r.judged, passed: r.passed }]));
  }
}
