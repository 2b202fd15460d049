import { Field, Float, ID, Int, ObjectType } from "type-graphql";
import { CacheHitKind } from "./enums";

@ObjectType({ description: "Hits of one kind of cache over the report's range." })
export class CacheHitCount {
  @Field(() => CacheHitKind)
  kind: CacheHitKind;
  @Field(() => Int)
  hits: number;
  @Field(() => Float, { description: "What these generations would have cost without the cache." })
  savedUsd: number;
}

@ObjectType()
export class UsageRow {
  @Field(() => String, { nullable: true, description: "UTC day, YYYY-MM-DD." })
  day?: string | null;
  @Field(() => String, { nullable: true })
  model?: string | null;
  @Field(() => String, { nullable: true })
  provider?: string | null;
  @Field(() => ID, { nullable: true })
  userId?: string | null;
  @Field(() => ID, { nullable: true, description: "With USER: the account the user belongs to." })
  accountId?: string | null;
  @Field(() => Int)
  generations: number;
  @Field(() => Float)
  costUsd: number;
  @Field(() => Int)
  cacheHits: number;
  @Field(() => Float)
  savedUsd: number;
  @Field(() => [CacheHitCount], { description: "This row's cache hits by kind." })
  cacheHitsByKind: CacheHitCount[];
  @Field(() => Float, {
    nullable: true,
    description: "Mean time from start to result of the paid (uncached) generations.",
  })
  avgDurationMs?: number | null;
}

@ObjectType()
export class UsageReport {
  @Field()
  from: Date;
  @Field()
  to: Date;
  @Field(() => Float)
  totalCostUsd: number;
  @Field(() => Int)
  generations: number;
  @Field(() => Int)
  cacheHits: number;
  @Field(() => Float, { description: "cacheHits / generations; 0 when there were none." })
  cacheHitRate: number;
  @Field(() => Float)
  savedUsd: number;
  @Field(() => Float, {
    nullable: true,
    description: "Mean time from start to result of the paid (uncached) generations.",
  })
  avgDurationMs?: number | null;
  @Field(() => [CacheHitCount])
  cacheHitsByKind: CacheHitCount[];
  @Field(() => [UsageRow])
  rows: UsageRow[];
}
