import { Arg, Ctx, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context";
import { ModelInfo, ModelInput } from "../types/catalog.types";
import { MediaType } from "../types/enums";

@Resolver()
export class CatalogResolver {
  @Query(() => [ModelInfo], {
    description:
      "Models this deployment can serve. ADMIN may add includeUnavailable for every stored model.",
  })
  models(
    @Ctx() ctx: GraphQLContext,
    @Arg("mediaType", () => MediaType, { nullable: true }) mediaType?: MediaType,
    @Arg("includeUnavailable", () => Boolean, { nullable: true }) includeUnavailable?: boolean,
  ): ModelInfo[] {
    return ctx.services.catalogAdmin
      .list(ctx.viewer, mediaType, includeUnavailable ?? false)
      .map((d) => ModelInfo.from(d));
  }

  @Mutation(() => ModelInfo, {
    description:
      "ADMIN: creates a model or replaces its definition; every process sees it at once.",
  })
  async upsertModel(
    @Ctx() ctx: GraphQLContext,
    @Arg("input", () => ModelInput) input: ModelInput,
  ): Promise<ModelInfo> {
    return ModelInfo.from(await ctx.services.catalogAdmin.upsert(ctx.viewer, input));
  }

  @Mutation(() => ModelInfo, {
    description: "ADMIN: a deprecated model is never chosen, but still served when named.",
  })
  async deprecateModel(
    @Ctx() ctx: GraphQLContext,
    @Arg("name") name: string,
    @Arg("deprecated") deprecated: boolean,
  ): Promise<ModelInfo> {
    return ModelInfo.from(await ctx.services.catalogAdmin.deprecate(ctx.viewer, name, deprecated));
  }
}
