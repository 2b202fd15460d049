import { Arg, Ctx, ID, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";
import { CacheHitKind, UsageDimension } from "../types/enums";
import type { CacheHitTotals } from "../../cost/usage.repository";
import { CacheHitCount, UsageReport } from "../types/usage.types";

const kindCount = (k: CacheHitTotals): CacheHitCount => ({
  kind: k.kind as CacheHitKind,
  hits: k.hits,
  savedUsd: Number(k.savedUsd),
});

@Resolver()
export class UsageResolver {
  @Query(() => UsageReport, {
    description:
      "Spend, generations and cache savings over [from, to), grouped as asked. A PARTNER sees its account; ADMIN all or the one named.",
  })
  async usage(
    @Ctx() ctx: GraphQLContext,
    @Arg("from") from: Date,
    @Arg("to") to: Date,
    @Arg("groupBy", () => [UsageDimension], { nullable: true }) groupBy?: UsageDimension[],
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<UsageReport> {
    const r = await ctx.services.usage.report(ctx.viewer, { from, to, groupBy, accountId });
    // Float on the wire; the exact decimals are in the CSV export (GET /usage.csv).
    return {
      ...r,
      totalCostUsd: Number(r.totalCostUsd),
      savedUsd: Number(r.savedUsd),
      cacheHitsByKind: r.cacheHitsByKind.map(kindCount),
      rows: r.rows.map((row) => ({
        ...row,
        costUsd: Number(row.totalCostUsd),
        savedUsd: Number(row.savedUsd),
        cacheHitsByKind: row.cacheHitsByKind.map(kindCount),
      })),
    };
  }
}
