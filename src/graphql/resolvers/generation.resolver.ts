import {
  Arg,
  Ctx,
  FieldResolver,
  ID,
  Int,
  Mutation,
  Query,
  Resolver,
  Root,
  Subscription,
} from "type-graphql";
import type { GenerationEventPayload } from "../../infra/pubsub/pubsub";
import type { GraphQLContext } from "../context";
import { GenerationStatus } from "../types/enums";
import { GenerateInput } from "../types/generate.input";
import {
  CostEstimate,
  Generation,
  GenerationConnection,
  GenerationEvent,
  Output,
} from "../types/generation.types";
import { encodeCursor } from "../../generation/generation.service";
import { withSpan } from "../../observability/tracing";

@Resolver(() => Generation)
export class GenerationResolver {
  @Query(() => Generation, { nullable: true })
  async generation(
    @Arg("id", () => ID) id: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Generation | null> {
    const g = await ctx.services.generations.get(ctx.viewer, id);
    return g ? Generation.from(g) : null;
  }

  @Query(() => GenerationConnection)
  async generations(
    @Ctx() ctx: GraphQLContext,
    @Arg("first", () => Int, { nullable: true }) first?: number,
    @Arg("after", () => String, { nullable: true }) after?: string,
    @Arg("status", () => GenerationStatus, { nullable: true }) status?: GenerationStatus,
    @Arg("userId", () => ID, { nullable: true }) userId?: string,
    @Arg("accountId", () => ID, { nullable: true, description: "ADMIN only." }) accountId?: string,
  ): Promise<GenerationConnection> {
    const page = await ctx.services.generations.list(ctx.viewer, {
      first,
      after,
      status,
      userId,
      accountId,
    });
    return {
      edges: page.nodes.map((n) => ({ cursor: encodeCursor(n), node: Generation.from(n) })),
      pageInfo: { hasNextPage: page.hasNextPage, endCursor: page.endCursor },
      totalCount: page.totalCount,
    };
  }

  @Query(() => CostEstimate)
  estimateCost(
    @Arg("input", () => GenerateInput) input: GenerateInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<CostEstimate> {
    return ctx.services.generations.estimate(ctx.viewer, input);
  }

  @Mutation(() => Generation)
  async generate(
    @Arg("input", () => GenerateInput) input: GenerateInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Generation> {
    // The root span of the generation's trace: its queue steps and provider calls are children.
    const g = await withSpan("generate", {}, async (span) => {
      const created = await ctx.services.generations.generate(ctx.viewer, input);
      span.setAttributes({ "gengate.generation.id": created.id, "gengate.model": created.model });
      return created;
    });
    return Generation.from(g);
  }

  @Mutation(() => Generation)
  async cancelGeneration(
    @Arg("id", () => ID) id: string,
    @Ctx() ctx: GraphQLContext,
  ): Promise<Generation> {
    return Generation.from(await ctx.services.generations.cancel(ctx.viewer, id));
  }

  @FieldResolver(() => [Output])
  outputs(@Root() g: Generation, @Ctx() ctx: GraphQLContext): Promise<Output[]> {
    return Promise.all(
      g.snapshot.outputs.map(async (o) => ({
        url: await ctx.services.outputUrl(o.key),
        contentType: o.contentType,
        width: o.width,
        height: o.height,
        durationSeconds: o.durationSeconds,
        bytes: o.bytes,
      })),
    );
  }

  @FieldResolver(() => Int, {
    nullable: true,
    description: "1 = next to start; null unless QUEUED.",
  })
  queuePosition(@Root() g: Generation, @Ctx() ctx: GraphQLContext): Promise<number | null> {
    return ctx.services.generations.queuePosition(g.snapshot);
  }

  @Subscription(() => GenerationEvent, {
    description:
      "The generation's current state first, then every change; completes when it finishes.",
    subscribe: ({ args, context }) =>
      (context as GraphQLContext).services.subscriptions.watchGeneration(
        (context as GraphQLContext).viewer,
        (args as { id: string }).id,
      ),
  })
  generationUpdated(
    @Root() event: GenerationEventPayload,
    @Arg("id", () => ID) _id: string,
  ): GenerationEvent {
    return toEvent(event);
  }

  @Subscription(() => GenerationEvent, {
    description: "Unfinished generations of the user (or the account) first, then every change.",
    subscribe: ({ args, context }) => {
      const a = args as { userId?: string | null; accountId?: string | null };
      const c = context as GraphQLContext;
      return c.services.subscriptions.watchUser(c.viewer, a.userId, a.accountId);
    },
  })
  generationsUpdated(
    @Root() event: GenerationEventPayload,
    @Arg("userId", () => ID, { nullable: true }) _userId?: string,
    @Arg("accountId", () => ID, { nullable: true, description: "ADMIN only." }) _accountId?: string,
  ): GenerationEvent {
    return toEvent(event);
  }
}

function toEvent(event: GenerationEventPayload): GenerationEvent {
  return {
    type: event.type,
    at: new Date(event.at),
    generation: Generation.from(event.generation),
  };
}
