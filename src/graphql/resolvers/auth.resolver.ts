import { Arg, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import { requireViewer } from "../../auth/viewer";
import type { GraphQLContext } from "../context";
import { AccountCreated, ApiKeyCreated, ClientToken, Viewer } from "../types/auth.types";
import { Role } from "../types/enums";
import type { ApiKeyEntity } from "../../entities";

@Resolver()
export class AuthResolver {
  @Query(() => Viewer)
  async viewer(@Ctx() ctx: GraphQLContext): Promise<Viewer> {
    const v = requireViewer(ctx.viewer);
    const account = await ctx.services.auth.accountOf(v);
    return { role: v.role, account, userId: v.userId ?? null };
  }

  @Mutation(() => AccountCreated, {
    description: "ADMIN: a partner account and its first PARTNER key.",
  })
  async createAccount(
    @Arg("name") name: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<AccountCreated> {
    const { account, apiKey, key } = await ctx.services.auth.createAccount(ctx.viewer, name);
    return { account, apiKey: keyCreated(apiKey, key) };
  }

  @Mutation(() => ApiKeyCreated, { description: "For the caller's account; ADMIN may name one." })
  async createApiKey(
    @Arg("role", () => Role) role: Role,
    @Ctx() ctx: GraphQLContext,
    @Arg("label", () => String, { nullable: true }) label?: string,
    @Arg("accountId", () => ID, { nullable: true }) accountId?: string,
  ): Promise<ApiKeyCreated> {
    const { apiKey, key } = await ctx.services.auth.createApiKey(
      ctx.viewer,
      role,
      label,
      accountId,
    );
    return keyCreated(apiKey, key);
  }

  @Mutation(() => Boolean)
  revokeApiKey(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<boolean> {
    return ctx.services.auth.revokeApiKey(ctx.viewer, id);
  }

  @Mutation(() => ClientToken, {
    description:
      "A short-lived token for one end user, for a browser to watch (and, with canGenerate, create) that user's generations.",
  })
  createClientToken(
    @Arg("userId", () => ID) userId: string,
    @Ctx() ctx: GraphQLContext,
    @Arg("ttlSeconds", () => Int, { nullable: true }) ttlSeconds?: number,
    @Arg("canGenerate", () => Boolean, { nullable: true }) canGenerate?: boolean,
  ): ClientToken {
    return ctx.services.auth.createClientToken(ctx.viewer, userId, ttlSeconds, canGenerate);
  }
}

function keyCreated(apiKey: ApiKeyEntity, key: string): ApiKeyCreated {
  return { id: apiKey.id, key, role: apiKey.role as Role, label: apiKey.label };
}
