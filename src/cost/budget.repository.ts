import type { DataSource, EntityManager } from "typeorm";
import { BudgetExceededError } from "../common/errors";
import type { Tier } from "../entities";
import { periodEnd, periodOf, WARNING_RATIO, type BudgetDefaults } from "./budget.policy";

/** Whose money a generation spends: the end user, and the account above it. */
export interface BudgetOwner {
  accountId: string;
  endUserId: string;
  userId: string;
  tier: Tier;
  /** The user's own monthly limit; null means the tier's default. */
  monthlyLimitUsd: number | null;
  /** The account's monthly limit over all its users; null means none. */
  accountLimitUsd: number | null;
}

export interface AlertRow {
  id: string;
  accountId: string | null;
  userId: string | null;
  kind: string;
  severity: "info" | "warning" | "critical";
  message: string;
  data: Record<string, unknown>;
  createdAt: string;
}

export interface BudgetSnapshot {
  userId: string;
  tier: Tier;
  period: string;
  limitUsd: number;
  spentUsd: number;
  reservedUsd: number;
  resetsAt: string;
}

interface PeriodRow {
  id: string;
  limit_usd: string;
  spent_usd: string;
  reserved_usd: string;
  warned_at: Date | null;
}

const TIER_MEMO_MS = 5_000;
const TIER_MEMO_SIZE = 10_000;

/** The two ledgers a reservation touches: per end user, and per account when it has a limit. */
const LEDGERS = {
  USER: { table: "budget_periods", owner: "end_user_id" },
  ACCOUNT: { table: "account_budget_periods", owner: "account_id" },
} as const;

/**
 * Budgets in Postgres. A reservation is one conditional UPDATE (spent + reserved + amount must
 * stay within the limit), so concurrent requests can never overspend: the row lock orders
 * them and each sees the others' reservations. Reservation and settlement run inside the
 * generation's own transactions (the caller passes its EntityManager).
 */
export class BudgetRepository {
  private readonly tiers = new Map<string, { tier: Tier; until: number }>();

  constructor(
    private readonly db: DataSource,
    private readonly defaults: BudgetDefaults,
  ) {}

  /**
   * Account-wide budget left in `period` (limit - spent - reserved) of the `limit` accounts
   * closest to their limit; accounts without an account-wide limit have no row. For the gauge.
   */
  async remainingByAccount(
    period: string,
    limit: number,
  ): Promise<Array<{ accountId: string; remainingUsd: number }>> {
    const rows = (await this.db.query(
      `SELECT account_id, limit_usd - spent_usd - reserved_usd AS remaining
         FROM account_budget_periods WHERE period = $1
        ORDER BY remaining ASC, account_id LIMIT $2`,
      [period, limit],
    )) as Array<{ account_id: string; remaining: string }>;
    return rows.map((r) => ({ accountId: r.account_id, remainingUsd: Number(r.remaining) }));
  }

  /**
   * The end user's tier; null for a user not seen yet. Read on every `generate`, so it is
   * remembered for a few seconds: a tier changed by another process applies within
   * TIER_MEMO_MS (at once in the process that changed it).
   */
  async tierOf(accountId: string, userId: string): Promise<Tier | null> {
    const key = `${accountId}\u0000${userId}`;
    const memo = this.tiers.get(key);
    if (memo && memo.until > Date.now()) return memo.tier;
    const [row] = (await this.db.query(
      `SELECT tier FROM end_users WHERE account_id = $1 AND user_id = $2`,
      [accountId, userId],
    )) as Array<{ tier: Tier }>;
    const tier = row?.tier ?? null;
    if (this.tiers.size >= TIER_MEMO_SIZE) this.tiers.clear();
    if (tier) this.tiers.set(key, { tier, until: Date.now() + TIER_MEMO_MS });
    return tier;
  }

  limitFor(owner: Pick<BudgetOwner, "tier" | "monthlyLimitUsd">): number {
    return owner.monthlyLimitUsd ?? this.defaults[owner.tier];
  }

  /**
   * Reserves `amount` for the current month against the user's budget and, when it has one,
   * the account's. Throws BudgetExceededError (and the caller's transaction rolls back).
   * Returns the period and the warning alerts this reservation raised (at most one per
   * ledger and period).
   */
  async reserve(
    m: EntityManager,
    owner: BudgetOwner,
    amount: number,
    now = new Date(),
  ): Promise<{ period: string; alerts: AlertRow[] }> {
    const period = periodOf(now);
    const alerts: AlertRow[] = [];
    const userAlert = await this.reserveIn(m, "USER", owner, period, amount, now);
    if (userAlert) alerts.push(userAlert);
    if (owner.accountLimitUsd !== null) {
      const accountAlert = await this.reserveIn(m, "ACCOUNT", owner, period, amount, now);
      if (accountAlert) alerts.push(accountAlert);
    }
    return { period, alerts };
  }

  /**
   * Settles generations in one statement: each one's reservation is released from the
   * ledgers of its period and its cost (0 when absent) charged to them.
   */
  async settle(m: EntityManager, items: Array<{ id: string; costUsd: number }>): Promise<void> {
    if (items.length === 0) return;
    await m.query(
      `WITH s AS (
         SELECT g.id, g.account_id, g.end_user_id, g.budget_period AS period, g.reserved_usd,
                COALESCE(c.cost, 0) AS cost
           FROM generations g
           JOIN unnest($1::uuid[], $2::numeric[]) AS c(id, cost) ON c.id = g.id
          WHERE g.budget_period IS NOT NULL AND (g.reserved_usd > 0 OR c.cost > 0)),
       per_user AS (
         UPDATE budget_periods b
            SET reserved_usd = GREATEST(b.reserved_usd - x.reserved, 0),
                spent_usd = b.spent_usd + x.cost
           FROM (SELECT end_user_id, period, sum(reserved_usd) AS reserved, sum(cost) AS cost
                   FROM s GROUP BY end_user_id, period) x
          WHERE b.end_user_id = x.end_user_id AND b.period = x.period),
       per_account AS (
         UPDATE account_budget_periods b
            SET reserved_usd = GREATEST(b.reserved_usd - x.reserved, 0),
                spent_usd = b.spent_usd + x.cost
           FROM (SELECT account_id, period, sum(reserved_usd) AS reserved, sum(cost) AS cost
                   FROM s GROUP BY account_id, period) x
          WHERE b.account_id = x.account_id AND b.period = x.period)
       UPDATE generations g SET reserved_usd = 0 FROM s WHERE g.id = s.id AND g.reserved_usd > 0`,
      [items.map((i) => i.id), items.map((i) => i.costUsd.toFixed(6))],
    );
  }

  async snapshot(
    accountId: string,
    userId: string,
    now = new Date(),
  ): Promise<BudgetSnapshot | null> {
    const period = periodOf(now);
    const [row] = (await this.db.query(
      `SELECT eu.tier, eu.monthly_limit_usd, b.limit_usd, b.spent_usd, b.reserved_usd
         FROM end_users eu
         LEFT JOIN budget_periods b ON b.end_user_id = eu.id AND b.period = $3
        WHERE eu.account_id = $1 AND eu.user_id = $2`,
      [accountId, userId, period],
    )) as Array<{
      tier: Tier;
      monthly_limit_usd: string | null;
      limit_usd: string | null;
      spent_usd: string | null;
      reserved_usd: string | null;
    }>;
    if (!row) return null;
    const limit =
      row.limit_usd !== null
        ? Number(row.limit_usd)
        : this.limitFor({
            tier: row.tier,
            monthlyLimitUsd: row.monthly_limit_usd === null ? null : Number(row.monthly_limit_usd),
          });
    return {
      userId,
      tier: row.tier,
      period,
      limitUsd: limit,
      spentUsd: Number(row.spent_usd ?? 0),
      reservedUsd: Number(row.reserved_usd ?? 0),
      resetsAt: periodEnd(now).toISOString(),
    };
  }

  /**
   * Sets a user's limit and/or tier (creating the user if new); the current month's ledger
   * takes the new limit at once. A null limit goes back to the tier's default.
   */
  async set(
    accountId: string,
    userId: string,
    change: { monthlyLimitUsd?: number | null; tier?: Tier },
    defaultTier: Tier,
    now = new Date(),
  ): Promise<BudgetSnapshot> {
    this.tiers.delete(`${accountId}\u0000${userId}`);
    await this.db.transaction(async (m) => {
      const [eu] = (await m.query(
        `INSERT INTO end_users (account_id, user_id, tier) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, user_id) DO UPDATE SET tier = end_users.tier
         RETURNING id, tier, monthly_limit_usd`,
        [accountId, userId, change.tier ?? defaultTier],
      )) as Array<{ id: string; tier: Tier; monthly_limit_usd: string | null }>;
      const tier = change.tier ?? eu!.tier;
      const limit =
        change.monthlyLimitUsd !== undefined
          ? change.monthlyLimitUsd
          : eu!.monthly_limit_usd === null
            ? null
            : Number(eu!.monthly_limit_usd);
      await m.query(`UPDATE end_users SET tier = $2, monthly_limit_usd = $3 WHERE id = $1`, [
        eu!.id,
        tier,
        limit === null ? null : limit.toFixed(6),
      ]);
      const effective = this.limitFor({ tier, monthlyLimitUsd: limit });
      await m.query(
        `INSERT INTO budget_periods (end_user_id, period, limit_usd) VALUES ($1, $2, $3)
         ON CONFLICT (end_user_id, period) DO UPDATE SET limit_usd = EXCLUDED.limit_usd`,
        [eu!.id, periodOf(now), effective.toFixed(6)],
      );
    });
    // Again after the commit: a read between the first delete and the commit saw the old tier.
    this.tiers.delete(`${accountId}\u0000${userId}`);
    return (await this.snapshot(accountId, userId, now))!;
  }

  /** Sets (or, with null, removes) the account's monthly limit over all its users. */
  async setAccountLimit(
    accountId: string,
    limitUsd: number | null,
    now = new Date(),
  ): Promise<{ limitUsd: number | null; spentUsd: number; reservedUsd: number } | null> {
    return this.db.transaction(async (m) => {
      const updated = (await m.query(
        `UPDATE accounts SET monthly_limit_usd = $2 WHERE id = $1 RETURNING id`,
        [accountId, limitUsd === null ? null : limitUsd.toFixed(6)],
      )) as [unknown[], number];
      if (updated[1] === 0) return null;
      if (limitUsd === null) return { limitUsd: null, spentUsd: 0, reservedUsd: 0 };
      // A new ledger starts from what the account's users already spent and hold this month.
      const [row] = (await m.query(
        `INSERT INTO account_budget_periods (account_id, period, limit_usd, spent_usd, reserved_usd)
         SELECT $1, $2, $3, COALESCE(sum(b.spent_usd), 0), COALESCE(sum(b.reserved_usd), 0)
           FROM budget_periods b JOIN end_users eu ON eu.id = b.end_user_id
          WHERE eu.account_id = $1 AND b.period = $2
         ON CONFLICT (account_id, period) DO UPDATE SET limit_usd = EXCLUDED.limit_usd
         RETURNING spent_usd, reserved_usd`,
        [accountId, periodOf(now), limitUsd.toFixed(6)],
      )) as Array<{ spent_usd: string; reserved_usd: string }>;
      return { limitUsd, spentUsd: Number(row!.spent_usd), reservedUsd: Number(row!.reserved_usd) };
    });
  }

  private async reserveIn(
    m: EntityManager,
    ledger: keyof typeof LEDGERS,
    owner: BudgetOwner,
    period: string,
    amount: number,
    now: Date,
  ): Promise<AlertRow | null> {
    const { table, owner: column } = LEDGERS[ledger];
    const ownerId = ledger === "USER" ? owner.endUserId : owner.accountId;
    const limit = ledger === "USER" ? this.limitFor(owner) : owner.accountLimitUsd!;
    const take = () =>
      m.query(
        `UPDATE ${table} SET reserved_usd = reserved_usd + $3
          WHERE ${column} = $1 AND period = $2 AND spent_usd + reserved_usd + $3 <= limit_usd
          RETURNING id, limit_usd, spent_usd, reserved_usd, warned_at`,
        [ownerId, period, amount.toFixed(6)],
      ) as Promise<[PeriodRow[], number]>;
    let [rows] = await take();
    if (rows.length === 0) {
      const [current] = (await m.query(
        `SELECT id, limit_usd, spent_usd, reserved_usd, warned_at FROM ${table}
          WHERE ${column} = $1 AND period = $2`,
        [ownerId, period],
      )) as PeriodRow[];
      if (current) throw exceeded(ledger, current, amount, now);
      // First reservation of the month: open the ledger at the limit in force, then take.
      await m.query(
        `INSERT INTO ${table} (${column}, period, limit_usd) VALUES ($1, $2, $3)
         ON CONFLICT (${column}, period) DO NOTHING`,
        [ownerId, period, limit.toFixed(6)],
      );
      [rows] = await take();
      if (rows.length === 0) {
        const [opened] = (await m.query(
          `SELECT id, limit_usd, spent_usd, reserved_usd, warned_at FROM ${table}
            WHERE ${column} = $1 AND period = $2`,
          [ownerId, period],
        )) as PeriodRow[];
        throw exceeded(ledger, opened!, amount, now);
      }
    }
    const row = rows[0]!;
    const used = Number(row.spent_usd) + Number(row.reserved_usd);
    const limitUsd = Number(row.limit_usd);
    if (row.warned_at !== null || limitUsd <= 0 || used < WARNING_RATIO * limitUsd) return null;
    // One warning per ledger and period: only the reservation that sets warned_at raises it.
    const [, won] = (await m.query(
      `UPDATE ${table} SET warned_at = now() WHERE id = $1 AND warned_at IS NULL`,
      [row.id],
    )) as [unknown, number];
    if (won === 0) return null;
    const percentUsed = Math.round((used / limitUsd) * 1000) / 10;
    const who = ledger === "USER" ? `User ${owner.userId}` : "The account";
    const alert = {
      accountId: owner.accountId,
      userId: ledger === "USER" ? owner.userId : null,
      kind: ledger === "USER" ? "BUDGET_WARNING" : "ACCOUNT_BUDGET_WARNING",
      severity: "warning" as const,
      message: `${who} has used ${percentUsed}% of the ${period} budget (${used.toFixed(2)} of ${limitUsd.toFixed(2)} USD)`,
      data: {
        userId: ledger === "USER" ? owner.userId : null,
        period,
        limitUsd,
        usedUsd: Math.round(used * 1e6) / 1e6,
        percentUsed,
        resetsAt: periodEnd(now).toISOString(),
      },
    };
    const [stored] = (await m.query(
      `INSERT INTO alerts (account_id, user_id, kind, severity, message, data)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb)
       RETURNING id, created_at`,
      [
        alert.accountId,
        alert.userId,
        alert.kind,
        alert.severity,
        alert.message,
        JSON.stringify(alert.data),
      ],
    )) as Array<{ id: string; created_at: Date }>;
    return { ...alert, id: stored!.id, createdAt: new Date(stored!.created_at).toISOString() };
  }
}

function exceeded(
  ledger: "USER" | "ACCOUNT",
  row: PeriodRow,
  requestedUsd: number,
  now: Date,
): BudgetExceededError {
  return new BudgetExceededError({
    scope: ledger,
    currentUsd: Math.round((Number(row.spent_usd) + Number(row.reserved_usd)) * 1e6) / 1e6,
    limitUsd: Number(row.limit_usd),
    requestedUsd,
    resetsAt: periodEnd(now).toISOString(),
  });
}
