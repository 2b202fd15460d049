import { Field, Float, ID, InputType, Int } from "type-graphql";
import { JSONResolver } from "graphql-scalars";
import type { GenerateRequest } from "../../generation/generation.input";
import { CacheMode, ContentType, MediaType, Priority } from "./enums";

@InputType()
export class GenerateInput implements GenerateRequest {
  @Field(() => ID, {
    nullable: true,
    description: "The partner's end user to charge; implied by a client token.",
  })
  userId?: string;
  @Field(() => MediaType)
  mediaType: MediaType;
  @Field({ description: "1 to 4,000 characters." })
  prompt: string;
  @Field(() => String, { nullable: true })
  negativePrompt?: string;
  @Field(() => String, {
    nullable: true,
    description: "Else chosen by quality, contentType and tier.",
  })
  model?: string;
  @Field(() => [String], { nullable: true })
  fallbackModels?: string[];
  @Field(() => Int, { nullable: true, description: "1 to 10." })
  quality?: number;
  @Field(() => ContentType, { nullable: true })
  contentType?: ContentType;
  @Field(() => Int, { nullable: true })
  width?: number;
  @Field(() => Int, { nullable: true })
  height?: number;
  @Field(() => Float, { nullable: true })
  durationSeconds?: number;
  @Field(() => Int, { nullable: true })
  seed?: number;
  @Field(() => Priority, { nullable: true })
  priority?: Priority;
  @Field(() => CacheMode, { nullable: true })
  cache?: CacheMode;
  @Field(() => String, { nullable: true })
  callbackUrl?: string;
  @Field(() => String, { nullable: true })
  idempotencyKey?: string;
  @Field(() => JSONResolver, { nullable: true })
  metadata?: unknown;
}
