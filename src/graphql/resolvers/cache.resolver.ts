import { Arg, Ctx, ID, Mutation, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";
import { Account } from "../types/auth.types";
import { CachePurgeResult } from "../types/cache.types";

@Resolver()
export class CacheResolver {
  @Mutation(() => CachePurgeResult, {
    description:
      "ADMIN: stop cached results from being served again: every result of a model, or one generation's.",
  })
  purgeCache(
    @Ctx() ctx: GraphQLContext,
    @Arg("model", () => String, { nullable: true }) model?: string,
    @Arg("generationId", () => ID, { nullable: true }) generationId?: string,
  ): Promise<CachePurgeResult> {
    return ctx.services.cacheAdmin.purge(ctx.viewer, { model, generationId });
  }

  @Mutation(() => Account, {
    description:
      "Semantic matching for an account (its own for a PARTNER; ADMIN names one). Off: its prompts neither answer nor are answered by similar prompts; exact hits still apply.",
  })
  setSemanticCache(
    @Ctx() ctx: GraphQLContext,
    @Arg("enabled") enabled: boolean,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<Account> {
    return ctx.services.cacheAdmin.setSemanticCache(ctx.viewer, enabled, accountId);
  }
}
