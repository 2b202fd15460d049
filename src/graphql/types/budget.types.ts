import { Field, Float, ID, ObjectType } from "type-graphql";
import { JSONResolver } from "graphql-scalars";
import { Tier } from "./enums";

@ObjectType({ description: "An end user's spending in the current UTC calendar month." })
export class Budget {
  @Field(() => ID)
  userId: string;
  @Field(() => Tier)
  tier: Tier;
  @Field({ description: "YYYY-MM, UTC." })
  period: string;
  @Field(() => Float)
  limitUsd: number;
  @Field(() => Float)
  spentUsd: number;
  @Field(() => Float, { description: "Held by generations that have not finished yet." })
  reservedUsd: number;
  @Field(() => Float)
  remainingUsd: number;
  @Field(() => Float, { description: "(spent + reserved) / limit, in percent." })
  percentUsed: number;
  @Field()
  resetsAt: Date;
}

@ObjectType({ description: "An account's own monthly limit over all its users." })
export class AccountBudget {
  @Field(() => ID)
  accountId: string;
  @Field(() => Float, { nullable: true, description: "Null: no account-level limit." })
  limitUsd: number | null;
  @Field(() => Float)
  spentUsd: number;
  @Field(() => Float)
  reservedUsd: number;
}

@ObjectType()
export class Alert {
  @Field(() => ID)
  id: string;
  @Field({ description: "What it is about, e.g. BUDGET_WARNING." })
  kind: string;
  @Field({ description: "info, warning or critical." })
  severity: string;
  @Field()
  message: string;
  @Field(() => JSONResolver, { nullable: true })
  data: unknown;
  @Field()
  createdAt: Date;
}
