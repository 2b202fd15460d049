import { Arg, Ctx, ID, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";

@Resolver()
export class CallbackResolver {
  @Query(() => String, {
    description:
      "The account's secret (whsec_…) that signs callbackUrl deliveries (Standard Webhooks). ADMIN names the account.",
  })
  callbackSecret(
    @Ctx() ctx: GraphQLContext,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<string> {
    return ctx.services.callbacks.secret(ctx.viewer, accountId);
  }
}
