import { Field, Float, ID, Int, ObjectType } from "type-graphql";
import { JSONResolver } from "graphql-scalars";
import type { GenerationSnapshot } from "../../generation/generation.events";
import { CacheHitKind, GenerationStatus, MediaType, Priority } from "./enums";

@ObjectType()
export class Output {
  @Field({
    description:
      "A signed link to the stored output; it expires, so read it again for a fresh one.",
  })
  url: string;
  @Field()
  contentType: string;
  @Field(() => Int, { nullable: true })
  width?: number;
  @Field(() => Int, { nullable: true })
  height?: number;
  @Field(() => Float, { nullable: true })
  durationSeconds?: number;
  @Field(() => Int, { nullable: true })
  bytes?: number;
}

@ObjectType()
export class CacheHit {
  @Field(() => CacheHitKind)
  kind: CacheHitKind;
  @Field(() => Float, { nullable: true })
  similarity?: number;
  @Field(() => ID)
  sourceGenerationId: string;
  @Field()
  originalPrompt: string;
}

@ObjectType()
export class Attempt {
  @Field(() => Int)
  number: number;
  @Field()
  provider: string;
  @Field()
  model: string;
  @Field()
  status: string;
  @Field(() => String, { nullable: true })
  error?: string | null;
  @Field()
  startedAt: Date;
  @Field(() => Date, { nullable: true })
  endedAt?: Date | null;
  @Field(() => Int, { nullable: true })
  durationMs?: number | null;
  @Field(() => Float, { nullable: true })
  costUsd?: number | null;
  @Field(() => ID, {
    nullable: true,
    description: "The provider batch this attempt was sent in (BATCH priority); null otherwise.",
  })
  batchId?: string | null;
  @Field(() => QualityReport, {
    nullable: true,
    description:
      "The quality gate's report on this attempt's outputs: why they were rejected when the attempt failed with QUALITY_FAILED. Null when no output was judged.",
  })
  quality?: QualityReport | null;
}

@ObjectType()
export class QualityCheck {
  @Field()
  name: string;
  @Field()
  passed: boolean;
  @Field(() => Float)
  score: number;
  @Field(() => JSONResolver, { nullable: true })
  details?: unknown;
}

@ObjectType()
export class QualityReport {
  @Field()
  passed: boolean;
  @Field(() => Float)
  score: number;
  @Field(() => [QualityCheck])
  checks: QualityCheck[];
}

@ObjectType()
export class GenerationError {
  @Field()
  code: string;
  @Field()
  message: string;
  @Field()
  retryable: boolean;
}

/**
 * A generation as clients see it. Built from a snapshot; `outputs` and `queuePosition` are
 * resolved on demand (signed URLs, a count query).
 */
@ObjectType()
export class Generation {
  @Field(() => ID)
  id: string;
  @Field(() => ID)
  userId: string;
  @Field(() => GenerationStatus)
  status: GenerationStatus;
  @Field(() => Float, { description: "0 to 1." })
  progress: number;
  @Field(() => MediaType)
  mediaType: MediaType;
  @Field()
  prompt: string;
  @Field(() => String, { nullable: true })
  negativePrompt: string | null;
  @Field()
  model: string;
  @Field(() => String, { nullable: true })
  provider: string | null;
  @Field(() => Int)
  seed: number;
  @Field(() => Priority)
  priority: Priority;
  @Field(() => Int, { nullable: true })
  width: number | null;
  @Field(() => Int, { nullable: true })
  height: number | null;
  @Field(() => Float, { nullable: true })
  durationSeconds: number | null;
  @Field(() => Float)
  estimatedCostUsd: number;
  @Field(() => Float, { nullable: true })
  costUsd: number | null;
  @Field(() => Float, { nullable: true })
  estimatedSeconds: number | null;
  @Field()
  cached: boolean;
  @Field(() => CacheHit, { nullable: true })
  cacheHit: CacheHit | null;
  @Field(() => [Attempt])
  attempts: Attempt[];
  @Field(() => QualityReport, { nullable: true })
  quality: QualityReport | null;
  @Field(() => GenerationError, { nullable: true })
  error: GenerationError | null;
  @Field(() => JSONResolver, { nullable: true })
  metadata: unknown;
  @Field()
  createdAt: Date;
  @Field(() => Date, { nullable: true })
  startedAt: Date | null;
  @Field(() => Date, { nullable: true })
  completedAt: Date | null;

  /** Kept for field resolvers (outputs are keys until signed). */
  snapshot: GenerationSnapshot;

  static from(s: GenerationSnapshot): Generation {
    const g = new Generation();
    Object.assign(g, {
      id: s.id,
      userId: s.userId,
      status: s.status as GenerationStatus,
      progress: s.progress,
      mediaType: s.mediaType as MediaType,
      prompt: s.prompt,
      negativePrompt: s.negativePrompt,
      model: s.model,
      provider: s.provider,
      seed: s.seed,
      priority: s.priority as Priority,
      width: s.width,
      height: s.height,
      durationSeconds: s.durationSeconds,
      estimatedCostUsd: s.estimatedCostUsd,
      costUsd: s.costUsd,
      estimatedSeconds: s.estimatedSeconds,
      cached: s.cached,
      cacheHit: s.cacheHit
        ? {
            kind: s.cacheHit.kind as CacheHitKind,
            similarity: s.cacheHit.similarity,
            sourceGenerationId: s.cacheHit.sourceGenerationId,
            originalPrompt: s.cacheHit.originalPrompt,
          }
        : null,
      attempts: s.attempts.map((a) => ({
        ...a,
        startedAt: new Date(a.startedAt),
        endedAt: a.endedAt ? new Date(a.endedAt) : null,
      })),
      quality: s.quality,
      error: s.error,
      metadata: s.metadata,
      createdAt: new Date(s.createdAt),
      startedAt: s.startedAt ? new Date(s.startedAt) : null,
      completedAt: s.completedAt ? new Date(s.completedAt) : null,
      snapshot: s,
    });
    return g;
  }
}

@ObjectType()
export class GenerationEvent {
  @Field({
    description: "QUEUED, STARTED, PROGRESS, ATTEMPT_FAILED, SUCCEEDED, FAILED or CANCELED.",
  })
  type: string;
  @Field(() => Generation)
  generation: Generation;
  @Field()
  at: Date;
}

@ObjectType()
export class GenerationEdge {
  @Field()
  cursor: string;
  @Field(() => Generation)
  node: Generation;
}

@ObjectType()
export class PageInfo {
  @Field()
  hasNextPage: boolean;
  @Field(() => String, { nullable: true })
  endCursor: string | null;
}

@ObjectType()
export class GenerationConnection {
  // Its length is the `first` of the field returning the connection, which counted it already.
  @Field(() => [GenerationEdge], {
    complexity: ({ childComplexity }: { childComplexity: number }) => 1 + childComplexity,
  })
  edges: GenerationEdge[];
  @Field(() => PageInfo)
  pageInfo: PageInfo;
  @Field(() => Int)
  totalCount: number;
}

@ObjectType()
export class CostBreakdown {
  @Field(() => Float)
  baseCostUsd: number;
  @Field(() => Float)
  resolutionMultiplier: number;
  @Field(() => Float)
  durationMultiplier: number;
  @Field(() => Float)
  batchDiscount: number;
}

@ObjectType()
export class CostEstimate {
  @Field(() => Float)
  estimatedCostUsd: number;
  @Field()
  model: string;
  @Field(() => Float, { nullable: true })
  estimatedSeconds?: number;
  @Field(() => CostBreakdown)
  breakdown: CostBreakdown;
  @Field(() => String, {
    nullable: true,
    description: "The provider whose price this is: the model's preferred one.",
  })
  provider?: string | null;
}
