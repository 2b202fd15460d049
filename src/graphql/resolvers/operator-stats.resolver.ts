import { Arg, Ctx, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";
import { StatsWindow } from "../types/enums";
import { OperatorStats } from "../types/operator-stats.types";

@Resolver()
export class OperatorStatsResolver {
  @Query(() => OperatorStats, {
    description:
      "ADMIN: queue, in-flight, cache hit rate, and spend, latency and error-rate series over the last hour or day, across every account.",
  })
  async operatorStats(
    @Ctx() ctx: GraphQLContext,
    @Arg("window", () => StatsWindow, { defaultValue: StatsWindow.HOUR }) window: StatsWindow,
  ): Promise<OperatorStats> {
    const s = await ctx.services.operatorStats.stats(ctx.viewer, window);
    return { ...s, window: s.window as StatsWindow };
  }
}
