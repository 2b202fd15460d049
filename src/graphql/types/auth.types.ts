import { Field, ID, ObjectType } from "type-graphql";
import { Role } from "./enums";

@ObjectType()
export class Account {
  @Field(() => ID)
  id: string;
  @Field()
  name: string;
  @Field({
    description:
      "Whether this account's prompts answer, and are answered by, similar prompts (semantic cache).",
  })
  semanticCache: boolean;
  @Field()
  createdAt: Date;
}

@ObjectType()
export class ApiKeyCreated {
  @Field(() => ID)
  id: string;
  @Field({ description: "Shown only here: store it now." })
  key: string;
  @Field(() => Role)
  role: Role;
  @Field(() => String, { nullable: true })
  label: string | null;
}

@ObjectType()
export class AccountCreated {
  @Field(() => Account)
  account: Account;
  @Field(() => ApiKeyCreated)
  apiKey: ApiKeyCreated;
}

@ObjectType()
export class ClientToken {
  @Field()
  token: string;
  @Field()
  expiresAt: Date;
}

@ObjectType()
export class Viewer {
  @Field({ description: "ADMIN, PARTNER or CLIENT." })
  role: string;
  @Field(() => Account, { nullable: true })
  account: Account | null;
  @Field(() => ID, { nullable: true })
  userId: string | null;
}
