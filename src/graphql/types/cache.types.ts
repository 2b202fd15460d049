import { Field, Int, ObjectType } from "type-graphql";

@ObjectType()
export class CachePurgeResult {
  @Field(() => Int, { description: "Generations whose results no longer answer other requests." })
  generations: number;
  @Field(() => Int, { description: "Exact-cache entries removed." })
  exactKeys: number;
  @Field(() => Int, { description: "Semantic-cache prompt embeddings removed." })
  semanticEntries: number;
}
