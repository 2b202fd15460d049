import { BadInputError, ForbiddenError, NotFoundError } from "../common/errors";
import { isUuid, validateUserId } from "../auth/auth.service";
import { requireRole, requireViewer, type Viewer } from "../auth/viewer";
import type { Tier } from "../entities";
import type { BudgetRepository, BudgetSnapshot } from "./budget.repository";
import { periodEnd, periodOf } from "./budget.policy";
import { TIERS } from "./model-selector";

/** The most a monthly limit may be, so that sums stay far inside `numeric(14, 6)`. */
export const MAX_LIMIT_USD = 1_000_000_000;

export interface Budget extends BudgetSnapshot {
  remainingUsd: number;
  percentUsed: number;
}

/**
 * Budgets as partners and operators see them: a PARTNER reads and sets its own end users',
 * ADMIN anyone's (naming the account); a client token reads its own user's.
 */
export class BudgetService {
  constructor(
    private readonly repo: BudgetRepository,
    private readonly defaultTier: Tier,
  ) {}

  async get(
    viewer: Viewer | null,
    userId: string,
    accountId: string | null | undefined,
  ): Promise<Budget> {
    const v = requireViewer(viewer);
    validateUserId(userId);
    if (v.role === "CLIENT" && userId !== v.userId) {
      throw new ForbiddenError("A client token sees its own user only");
    }
    const account = this.accountFor(v, accountId);
    const snapshot =
      (await this.repo.snapshot(account, userId)) ?? this.fresh(userId, this.defaultTier);
    return withDerived(snapshot);
  }

  async set(
    viewer: Viewer | null,
    args: {
      userId: string;
      monthlyLimitUsd: number;
      tier?: string | null;
      accountId?: string | null;
    },
  ): Promise<Budget> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    validateUserId(args.userId);
    assertLimit("monthlyLimitUsd", args.monthlyLimitUsd);
    if (args.tier != null && !TIERS.includes(args.tier as Tier)) {
      throw new BadInputError("tier", `must be one of ${TIERS.join(", ")}`);
    }
    const account = this.accountFor(v, args.accountId);
    const snapshot = await this.repo
      .set(
        account,
        args.userId,
        {
          monthlyLimitUsd: args.monthlyLimitUsd,
          tier: (args.tier ?? undefined) as Tier | undefined,
        },
        this.defaultTier,
      )
      .catch((err: unknown) => {
        // The account named does not exist (foreign key).
        if ((err as { code?: string }).code === "23503") throw new NotFoundError("No such account");
        throw err;
      });
    return withDerived(snapshot);
  }

  /** The account's own monthly limit over all its users (null removes it). */
  async setAccountLimit(
    viewer: Viewer | null,
    limitUsd: number | null | undefined,
    accountId: string | null | undefined,
  ): Promise<{
    accountId: string;
    limitUsd: number | null;
    spentUsd: number;
    reservedUsd: number;
  }> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (limitUsd != null) assertLimit("monthlyLimitUsd", limitUsd);
    const account = this.accountFor(v, accountId);
    const result = await this.repo.setAccountLimit(account, limitUsd ?? null);
    if (!result) throw new NotFoundError("No such account");
    return { accountId: account, ...result };
  }

  private accountFor(v: Viewer, accountId: string | null | undefined): string {
    if (accountId == null) {
      if (v.role === "ADMIN") throw new BadInputError("accountId", "is required for ADMIN");
      return v.accountId;
    }
    if (!isUuid(accountId)) throw new BadInputError("accountId", "must be a UUID");
    if (v.role !== "ADMIN" && accountId !== v.accountId) {
      throw new ForbiddenError("Only ADMIN may name another account");
    }
    return accountId;
  }

  private fresh(userId: string, tier: Tier): BudgetSnapshot {
    const now = new Date();
    return {
      userId,
      tier,
      period: periodOf(now),
      limitUsd: this.repo.limitFor({ tier, monthlyLimitUsd: null }),
      spentUsd: 0,
      reservedUsd: 0,
      resetsAt: periodEnd(now).toISOString(),
    };
  }
}

function assertLimit(field: string, value: number): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || value > MAX_LIMIT_USD) {
    throw new BadInputError(field, `must be a number from 0 to ${MAX_LIMIT_USD}`);
  }
}

function withDerived(b: BudgetSnapshot): Budget {
  const used = b.spentUsd + b.reservedUsd;
  return {
    ...b,
    remainingUsd: Math.max(0, Math.round((b.limitUsd - used) * 1e6) / 1e6),
    percentUsed:
      b.limitUsd > 0 ? Math.round((used / b.limitUsd) * 10_000) / 100 : used > 0 ? 100 : 0,
  };
}
