import { BudgetResolver } from "./resolvers/budget.resolver";
import { CacheResolver } from "./resolvers/cache.resolver";
import { UsageResolver } from "./resolvers/usage.resolver";
import "reflect-metadata";
import { DateTimeResolver } from "graphql-scalars";
import { lexicographicSortSchema, printSchema, type GraphQLSchema } from "graphql";
import { buildSchema } from "type-graphql";
import { AuthResolver } from "./resolvers/auth.resolver";
import { CatalogResolver } from "./resolvers/catalog.resolver";
import { CallbackResolver } from "./resolvers/callback.resolver";
import { GenerationResolver } from "./resolvers/generation.resolver";
import { ProviderHealthResolver } from "./resolvers/provider-health.resolver";
import { OperatorStatsResolver } from "./resolvers/operator-stats.resolver";

export async function buildGraphQLSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers: [
      AuthResolver,
      BudgetResolver,
      CacheResolver,
      CallbackResolver,
      CatalogResolver,
      GenerationResolver,
      OperatorStatsResolver,
      ProviderHealthResolver,
      UsageResolver,
    ],
    scalarsMap: [{ type: Date, scalar: DateTimeResolver }],
    validate: false,
    // Every subscription brings its own `subscribe` (auth, current state first, dedup by
    // version), so type-graphql's topic-based pub/sub is never used; it only insists on one.
    pubSub: {
      publish: () => {
        throw new Error("type-graphql pub/sub is not used; publish through GenerationEvents");
      },
      subscribe: () => {
        throw new Error(
          "type-graphql pub/sub is not used; subscriptions bring their own subscribe",
        );
      },
    },
    emitSchemaFile: false,
  });
}

/** The SDL committed as `schema/schema.graphql`; CI fails when it differs. */
export async function printGraphQLSchema(): Promise<string> {
  return `${printSchema(lexicographicSortSchema(await buildGraphQLSchema()))}\n`;
}
