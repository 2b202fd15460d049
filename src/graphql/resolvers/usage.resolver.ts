import { Arg, Ctx, ID, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";
import { CacheHitKind, UsageDimension } from "../types/enums";
import { UsageReport } from "../types/usage.types";

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
    return {
      ...r,
      cacheHitsByKind: r.cacheHitsByKind.map((k) => ({ ...k, kind: k.kind as CacheHitKind })),
      rows: r.rows.map((row) => ({ ...row, costUsd: row.totalCostUsd })),
    };
  }
}
