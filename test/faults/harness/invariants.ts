import type { Deployment } from "./stack";

/**
 * What must hold in Postgres after any fault, once the deployment has settled: checked over
 * every generation of the scenario's database, not only those the load driver saw accepted
 * (a request that failed on the client's side may still have created one).
 */
export interface Violations {
  /** Accepted ids with no row. */
  missing: string[];
  /** Rows not in a terminal state. */
  unfinished: Array<{ id: string; status: string }>;
  /** Rows whose attempts contradict their status. */
  contradictory: Array<{ id: string; status: string; attempts: string }>;
  /** Generations with a usage row count other than what their status calls for. */
  usage: Array<{ id: string; status: string; rows: number }>;
  /** Ledgers whose spent is not the sum of their usage rows, or with something still reserved. */
  budgets: Array<Record<string, unknown>>;
  /** Terminal generations still holding a reservation. */
  reserved: Array<{ id: string; reserved: string }>;
}

export interface SettledReport {
  total: number;
  byStatus: Record<string, number>;
  violations: Violations;
}

export async function checkInvariants(
  d: Deployment,
  acceptedIds: string[],
): Promise<SettledReport> {
  const rows = await d.query<{ id: string; status: string }>(`SELECT id, status FROM generations`);
  const byStatus: Record<string, number> = {};
  for (const r of rows) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const known = new Set(rows.map((r) => r.id));

  const unfinished = rows.filter((r) => !["SUCCEEDED", "FAILED", "CANCELED"].includes(r.status));

  // SUCCEEDED: exactly one SUCCEEDED attempt (none for a generation served without one: a
  // cache hit, or attached to an identical running one). FAILED/CANCELED: none SUCCEEDED.
  // Finished or not, no attempt may still be RUNNING once the generation is terminal.
  const contradictory = await d.query<{ id: string; status: string; attempts: string }>(
    `SELECT g.id, g.status,
            string_agg(a.number || ':' || a.provider || ':' || a.status, ', ' ORDER BY a.number)
              AS attempts
       FROM generations g LEFT JOIN attempts a ON a.generation_id = g.id
      WHERE g.status IN ('SUCCEEDED', 'FAILED', 'CANCELED')
      GROUP BY g.id, g.status, g.cached, g.inflight_of
     HAVING count(*) FILTER (WHERE a.status = 'RUNNING') > 0
         OR (g.status = 'SUCCEEDED' AND NOT g.cached
             AND count(*) FILTER (WHERE a.status = 'SUCCEEDED') <> 1)
         OR (g.status <> 'SUCCEEDED' AND count(*) FILTER (WHERE a.status = 'SUCCEEDED') > 0)`,
  );

  // One usage row per succeeded generation, none for the others.
  const usage = await d.query<{ id: string; status: string; rows: number }>(
    `SELECT g.id, g.status, count(u.id)::int AS rows
       FROM generations g LEFT JOIN usage_records u ON u.generation_id = g.id
      GROUP BY g.id, g.status
     HAVING (g.status = 'SUCCEEDED' AND count(u.id) <> 1)
         OR (g.status <> 'SUCCEEDED' AND count(u.id) <> 0)`,
  );

  // Each ledger's spent is the sum of its usage rows, and nothing is reserved once every
  // generation is terminal.
  const budgets = await d.query<Record<string, unknown>>(
    `WITH charged AS (
       SELECT g.end_user_id, g.account_id, g.budget_period AS period, sum(u.cost_usd) AS cost
         FROM usage_records u JOIN generations g ON g.id = u.generation_id
        WHERE g.budget_period IS NOT NULL
        GROUP BY g.end_user_id, g.account_id, g.budget_period)
     SELECT 'user' AS ledger, b.end_user_id::text AS owner, b.period,
            b.spent_usd::text AS spent, b.reserved_usd::text AS reserved,
            COALESCE(c.cost, 0)::text AS usage_sum
       FROM budget_periods b
       LEFT JOIN (SELECT end_user_id, period, sum(cost) AS cost FROM charged
                   GROUP BY end_user_id, period) c
         ON c.end_user_id = b.end_user_id AND c.period = b.period
      WHERE b.spent_usd <> COALESCE(c.cost, 0) OR b.reserved_usd <> 0
     UNION ALL
     SELECT 'account', b.account_id::text, b.period, b.spent_usd::text, b.reserved_usd::text,
            COALESCE(c.cost, 0)::text
       FROM account_budget_periods b
       LEFT JOIN (SELECT account_id, period, sum(cost) AS cost FROM charged
                   GROUP BY account_id, period) c
         ON c.account_id = b.account_id AND c.period = b.period
      WHERE b.spent_usd <> COALESCE(c.cost, 0) OR b.reserved_usd <> 0`,
  );

  const reserved = await d.query<{ id: string; reserved: string }>(
    `SELECT id, reserved_usd::text AS reserved FROM generations
      WHERE status IN ('SUCCEEDED', 'FAILED', 'CANCELED') AND reserved_usd <> 0`,
  );

  return {
    total: rows.length,
    byStatus,
    violations: {
      missing: acceptedIds.filter((id) => !known.has(id)),
      unfinished,
      contradictory,
      usage,
      budgets,
      reserved,
    },
  };
}

/** Every generation is terminal: what the scenario waits for before checking the rest. */
export async function unfinishedCount(d: Deployment): Promise<number> {
  const [row] = await d.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM generations
      WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELED')`,
  );
  return row!.n;
}
