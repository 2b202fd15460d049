import { Field, Float, Int, ObjectType } from "type-graphql";
import { StatsWindow } from "./enums";

@ObjectType({ description: "One time bucket of the operators' series." })
export class StatsBucket {
  @Field({ description: "Start of the bucket." })
  start: Date;
  @Field(() => Float, { description: "USD charged (usage rows created in the bucket)." })
  spendUsd: number;
  @Field(() => Int, { description: "Usage rows (finished generations, cached or paid)." })
  generations: number;
  @Field(() => Int)
  cacheHits: number;
  @Field(() => Int, { description: "Generations that succeeded in the bucket." })
  succeeded: number;
  @Field(() => Int, { description: "Generations that failed in the bucket." })
  failed: number;
  @Field(() => Float, {
    nullable: true,
    description: "failed / (succeeded + failed); null with none.",
  })
  errorRate: number | null;
  @Field(() => Float, {
    nullable: true,
    description: "Median creation-to-success time of paid generations, ms.",
  })
  p50LatencyMs: number | null;
  @Field(() => Float, { nullable: true })
  p95LatencyMs: number | null;
}

@ObjectType({ description: "Service-wide numbers for the operators' dashboard." })
export class OperatorStats {
  @Field(() => StatsWindow)
  window: StatsWindow;
  @Field()
  from: Date;
  @Field()
  to: Date;
  @Field(() => Int)
  bucketSeconds: number;
  @Field(() => Int, { description: "Generations waiting now (QUEUED or BATCHED)." })
  queued: number;
  @Field(() => Int, { description: "Generations at a provider now (PROCESSING)." })
  processing: number;
  @Field(() => Float)
  spendUsd: number;
  @Field(() => Int)
  generations: number;
  @Field(() => Int)
  cacheHits: number;
  @Field(() => Float)
  cacheHitRate: number;
  @Field(() => Float)
  errorRate: number;
  @Field(() => [StatsBucket])
  series: StatsBucket[];
}
