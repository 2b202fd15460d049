import { Field, Float, Int, ObjectType } from "type-graphql";
import { CircuitState } from "./enums";

@ObjectType()
export class ProviderHealth {
  @Field()
  provider: string;
  @Field(() => CircuitState)
  circuit: CircuitState;
  @Field(() => Float, {
    description: "Share of successful calls in the recent window (1 with none).",
  })
  successRate: number;
  @Field(() => Int)
  requests: number;
  @Field(() => Int)
  failures: number;
  @Field(() => Float, { nullable: true })
  p50LatencyMs: number | null;
  @Field(() => Float, { nullable: true })
  p95LatencyMs: number | null;
  @Field(() => Date, { nullable: true })
  openedAt: Date | null;
  @Field(() => String, { nullable: true })
  lastError: string | null;
}
