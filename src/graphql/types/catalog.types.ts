import { Field, Float, InputType, Int, ObjectType } from "type-graphql";
import type { ModelDescription, ModelInputData } from "../../cost/catalog.service";
import { MediaType, QualityClass } from "./enums";

@ObjectType({ description: "What a model costs, at its list price." })
export class ModelPricing {
  @Field(() => Float, {
    description: "One output at the reference size (per second when perSecond).",
  })
  baseCostUsd: number;
  @Field({ description: "Scaled by output megapixels relative to referenceMegapixels." })
  perMegapixel: boolean;
  @Field(() => Float, { nullable: true })
  referenceMegapixels: number | null;
  @Field({ description: "Multiplied by the output duration in seconds." })
  perSecond: boolean;
  @Field(() => Float, { description: "Fraction taken off for BATCH priority." })
  batchDiscount: number;
}

@ObjectType()
export class ModelLimits {
  @Field(() => Int, { nullable: true })
  minSize: number | null;
  @Field(() => Int, { nullable: true })
  maxSize: number | null;
  @Field(() => Int, { nullable: true })
  defaultWidth: number | null;
  @Field(() => Int, { nullable: true })
  defaultHeight: number | null;
  @Field(() => Float, { nullable: true })
  minDurationSeconds: number | null;
  @Field(() => Float, { nullable: true })
  maxDurationSeconds: number | null;
  @Field(() => Float, { nullable: true })
  defaultDurationSeconds: number | null;
}

@ObjectType({ description: "One provider of a model, in preference order." })
export class ModelRoute {
  @Field()
  provider: string;
  @Field({ description: "The provider's own id for the model." })
  model: string;
  @Field(() => Float, { description: "This provider's price: its own, or the model's." })
  baseCostUsd: number;
  @Field(() => Float)
  batchDiscount: number;
  @Field({ description: "Whether this provider has a price of its own." })
  priceOverride: boolean;
  @Field({ description: "Whether this deployment has the provider configured." })
  configured: boolean;
}

@ObjectType()
export class ModelInfo {
  @Field()
  name: string;
  @Field(() => MediaType)
  mediaType: MediaType;
  @Field(() => Int)
  quality: number;
  @Field(() => QualityClass)
  qualityClass: QualityClass;
  @Field(() => Float, { description: "pricing.baseCostUsd." })
  baseCostUsd: number;
  @Field(() => [String], { description: "Configured providers, in preference order." })
  providers: string[];
  @Field({ description: "Never chosen automatically; still served when named." })
  deprecated: boolean;
  @Field({ description: "Whether at least one of its providers is configured here." })
  available: boolean;
  @Field(() => ModelPricing)
  pricing: ModelPricing;
  @Field(() => ModelLimits)
  limits: ModelLimits;
  @Field(() => [ModelRoute])
  routes: ModelRoute[];
  @Field(() => [String], { description: "Models to fall back to when the request names none." })
  alternates: string[];
  @Field(() => [String], { description: "Other names that mean this model." })
  aliases: string[];
  @Field(() => Float, { description: "Typical provider time until observations exist." })
  typicalSeconds: number;
  @Field(() => Int, { description: "An attempt with no result after this long fails." })
  timeoutSeconds: number;

  static from(d: ModelDescription): ModelInfo {
    const m = d.definition;
    const audio = m.mediaType === "AUDIO";
    return {
      name: m.name,
      mediaType: m.mediaType as MediaType,
      quality: m.quality,
      qualityClass: d.qualityClass as QualityClass,
      baseCostUsd: m.pricing.baseUsd,
      providers: d.providers,
      deprecated: m.deprecated ?? false,
      available: d.available,
      pricing: {
        baseCostUsd: m.pricing.baseUsd,
        perMegapixel: m.pricing.perMegapixel ?? false,
        referenceMegapixels: m.pricing.referenceMegapixels ?? null,
        perSecond: m.pricing.perSecond ?? false,
        batchDiscount: m.pricing.batchDiscount ?? 0,
      },
      limits: {
        minSize: audio ? null : m.limits.minSize,
        maxSize: audio ? null : m.limits.maxSize,
        defaultWidth: audio ? null : m.limits.defaultWidth,
        defaultHeight: audio ? null : m.limits.defaultHeight,
        minDurationSeconds: m.limits.minDurationSeconds ?? null,
        maxDurationSeconds: m.limits.maxDurationSeconds ?? null,
        defaultDurationSeconds: m.limits.defaultDurationSeconds ?? null,
      },
      routes: d.routes,
      alternates: m.alternates ?? [],
      aliases: m.aliases ?? [],
      typicalSeconds: m.typicalSeconds,
      timeoutSeconds: m.timeoutSeconds,
    };
  }
}

@InputType()
export class ModelPricingInput implements Partial<ModelInputData["pricing"]> {
  @Field(() => Float, {
    description: "USD for one output at the reference size (per second when perSecond).",
  })
  baseCostUsd: number;
  @Field(() => Boolean, { nullable: true, description: "Default false. Not for AUDIO." })
  perMegapixel?: boolean | null;
  @Field(() => Float, { nullable: true, description: "With perMegapixel; default 1." })
  referenceMegapixels?: number | null;
  @Field(() => Boolean, { nullable: true, description: "Default false. VIDEO and AUDIO only." })
  perSecond?: boolean | null;
  @Field(() => Float, {
    nullable: true,
    description: "Fraction off for BATCH priority, 0 up to 1; default 0 (no batch API).",
  })
  batchDiscount?: number | null;
}

@InputType({ description: "Sizes for IMAGE and VIDEO; durations for VIDEO and AUDIO." })
export class ModelLimitsInput implements Partial<ModelInputData["limits"]> {
  @Field(() => Int, { nullable: true })
  minSize?: number | null;
  @Field(() => Int, { nullable: true })
  maxSize?: number | null;
  @Field(() => Int, { nullable: true })
  defaultWidth?: number | null;
  @Field(() => Int, { nullable: true })
  defaultHeight?: number | null;
  @Field(() => Float, { nullable: true })
  minDurationSeconds?: number | null;
  @Field(() => Float, { nullable: true })
  maxDurationSeconds?: number | null;
  @Field(() => Float, { nullable: true })
  defaultDurationSeconds?: number | null;
}

@InputType()
export class ModelRouteInput {
  @Field({ description: "A provider name: simulated, replicate, fal, wavespeed, openai, …" })
  provider: string;
  @Field({ description: "The provider's own id for the model." })
  model: string;
  @Field(() => Float, {
    nullable: true,
    description: "This provider's price where it differs from the model's.",
  })
  baseCostUsd?: number | null;
  @Field(() => Float, {
    nullable: true,
    description: "This provider's batch discount where it differs.",
  })
  batchDiscount?: number | null;
}

@InputType({ description: "A whole model definition; it replaces the stored one." })
export class ModelInput implements ModelInputData {
  @Field()
  name: string;
  @Field(() => MediaType, { description: "Cannot change once the model exists." })
  mediaType: MediaType;
  @Field(() => Int, { description: "1 to 10." })
  quality: number;
  @Field(() => ModelPricingInput)
  pricing: ModelPricingInput;
  @Field(() => ModelLimitsInput)
  limits: ModelLimitsInput;
  @Field(() => [ModelRouteInput], { description: "Providers in preference order." })
  routes: ModelRouteInput[];
  @Field(() => [String], { nullable: true })
  alternates?: string[] | null;
  @Field(() => [String], { nullable: true })
  aliases?: string[] | null;
  @Field(() => Float)
  typicalSeconds: number;
  @Field(() => Int)
  timeoutSeconds: number;
  @Field(() => Boolean, { nullable: true })
  deprecated?: boolean | null;
}
