import { BadInputError, ForbiddenError } from "../common/errors";
import { isUuid } from "../auth/auth.service";
import { requireRole, type Viewer } from "../auth/viewer";
import type {
  CacheHitTotals,
  UsageDimension,
  UsageGroup,
  UsageRepository,
  UsageTotals,
} from "./usage.repository";

export interface UsageReport extends UsageTotals {
  from: Date;
  to: Date;
  cacheHitRate: number;
  avgDurationMs: number | null;
  cacheHitsByKind: CacheHitTotals[];
  rows: UsageGroup[];
}

const DIMENSIONS: readonly UsageDimension[] = ["DAY", "MODEL", "PROVIDER", "USER"];
const MAX_RANGE_DAYS = 366;

/** Usage reports: a PARTNER sees its own account, ADMIN any one or all. */
export class UsageService {
  constructor(private readonly repo: UsageRepository) {}

  async report(
    viewer: Viewer | null,
    args: { from: Date; to: Date; groupBy?: string[] | null; accountId?: string | null },
  ): Promise<UsageReport> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    const { from, to } = args;
    if (!(from instanceof Date) || Number.isNaN(from.getTime())) {
      throw new BadInputError("from", "must be a date-time");
    }
    if (!(to instanceof Date) || Number.isNaN(to.getTime())) {
      throw new BadInputError("to", "must be a date-time");
    }
    if (to <= from) throw new BadInputError("to", "must be after from");
    if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * 86_400_000) {
      throw new BadInputError("to", `the range may span at most ${MAX_RANGE_DAYS} days`);
    }
    const groupBy = args.groupBy ?? [];
    for (const [i, d] of groupBy.entries()) {
      if (!DIMENSIONS.includes(d as UsageDimension)) {
        throw new BadInputError(`groupBy[${i}]`, `must be one of ${DIMENSIONS.join(", ")}`);
      }
      if (groupBy.indexOf(d) !== i) throw new BadInputError(`groupBy[${i}]`, `repeats ${d}`);
    }
    if (args.accountId != null && !isUuid(args.accountId)) {
      throw new BadInputError("accountId", "must be a UUID");
    }
    if (v.role !== "ADMIN" && args.accountId != null && args.accountId !== v.accountId) {
      throw new ForbiddenError("A PARTNER key reads its own account's usage only");
    }
    const accountId = v.role === "ADMIN" ? (args.accountId ?? undefined) : v.accountId;
    const { totals, byKind, rows } = await this.repo.report({
      from,
      to,
      accountId,
      groupBy: groupBy as UsageDimension[],
    });
    return {
      from,
      to,
      ...totals,
      cacheHitRate: totals.generations > 0 ? totals.cacheHits / totals.generations : 0,
      cacheHitsByKind: byKind,
      rows,
    };
  }
}
