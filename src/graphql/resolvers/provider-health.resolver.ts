import { Ctx, Query, Resolver, Root, Subscription } from "type-graphql";
import type { CircuitTransition, ProviderHealthSnapshot } from "../../routing/circuit-breaker";
import type { GraphQLContext } from "../context";
import { CircuitState } from "../types/enums";
import { ProviderHealth } from "../types/provider-health.types";

@Resolver()
export class ProviderHealthResolver {
  @Query(() => [ProviderHealth], {
    description: "ADMIN: every configured provider's circuit and recent health.",
  })
  async providerHealth(@Ctx() ctx: GraphQLContext): Promise<ProviderHealth[]> {
    return (await ctx.services.providerHealth.list(ctx.viewer)).map(toHealth);
  }

  @Subscription(() => ProviderHealth, {
    description: "ADMIN: a provider's health at each circuit transition.",
    subscribe: ({ context }) =>
      (context as GraphQLContext).services.providerHealth.watch((context as GraphQLContext).viewer),
  })
  providerHealthChanged(@Root() transition: CircuitTransition): ProviderHealth {
    return toHealth(transition.health);
  }
}

function toHealth(h: ProviderHealthSnapshot): ProviderHealth {
  return {
    ...h,
    circuit: h.circuit as CircuitState,
    openedAt: h.openedAt ? new Date(h.openedAt) : null,
  };
}
