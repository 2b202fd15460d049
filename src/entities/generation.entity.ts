import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";
import { usd } from "./transformers";

export type MediaType = "IMAGE" | "VIDEO" | "AUDIO";
export type GenerationStatus =
  "QUEUED" | "BATCHED" | "PROCESSING" | "SUCCEEDED" | "FAILED" | "CANCELED";
export type Priority = "INTERACTIVE" | "STANDARD" | "BATCH";

export const UNFINISHED_STATUSES: readonly GenerationStatus[] = ["QUEUED", "BATCHED", "PROCESSING"];

/** Output as stored: an object-store key, never a provider URL (those expire). */
export interface StoredOutput {
  key: string;
  contentType: string;
  width?: number;
  height?: number;
  durationSeconds?: number;
  bytes: number;
}

/** A quality gate report as stored (`QualityReport` in GraphQL; see `src/quality/`). */
export interface QualityReportInfo {
  passed: boolean;
  score: number;
  checks: Array<{ name: string; passed: boolean; score: number; details: Record<string, unknown> }>;
}

export interface GenerationErrorInfo {
  code: string;
  message: string;
  retryable: boolean;
}

export type CacheHitKind = "EXACT" | "SEMANTIC" | "INFLIGHT";

/** How a generation was served without paying a provider. */
export interface CacheHitInfo {
  kind: CacheHitKind;
  /** Cosine similarity of the prompts, for a SEMANTIC hit. */
  similarity?: number;
  sourceGenerationId: string;
  originalPrompt: string;
}

/** Request parameters that do not need their own column. */
export interface GenerationParams {
  width?: number;
  height?: number;
  durationSeconds?: number;
  quality?: number;
  contentType?: string;
  fallbackModels?: string[];
  cacheMode?: string;
  /** The highest model quality the user's tier allows, when it limits one. */
  maxQuality?: number;
  callbackUrl?: string;
  metadata?: unknown;
}

@Entity("generations")
@Index("generations_account_created_idx", ["accountId", "createdAt", "id"])
@Index("generations_account_user_created_idx", ["accountId", "userId", "createdAt", "id"])
@Index("generations_account_idempotency_key", ["accountId", "idempotencyKey"], {
  unique: true,
  where: "idempotency_key IS NOT NULL",
})
@Index("generations_unfinished_idx", ["status", "updatedAt"], {
  where: "status IN ('QUEUED', 'BATCHED', 'PROCESSING')",
})
@Index("generations_completed_idx", ["completedAt"], { where: "completed_at IS NOT NULL" })
@Index("generations_model_completed_idx", ["model", "completedAt"], {
  where: "status = 'SUCCEEDED' AND cached = false",
})
export class GenerationEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "account_id" })
  accountId: string;

  @Column("uuid", { name: "end_user_id" })
  endUserId: string;

  /** The partner's id for the end user (denormalised from end_users for listing). */
  @Column("text", { name: "user_id" })
  userId: string;

  @Column("text")
  status: GenerationStatus;

  @Column("real", { default: 0 })
  progress: number;

  @Column("text", { name: "media_type" })
  mediaType: MediaType;

  @Column("text")
  prompt: string;

  @Column("text", { name: "negative_prompt", nullable: true })
  negativePrompt: string | null;

  @Column("text")
  model: string;

  @Column("text", { nullable: true })
  provider: string | null;

  @Column("integer")
  seed: number;

  @Column("text")
  priority: Priority;

  @Column("jsonb", { default: {} })
  params: GenerationParams;

  @Column("jsonb", { default: [] })
  outputs: StoredOutput[];

  @Column("numeric", { name: "estimated_cost_usd", precision: 14, scale: 6, transformer: usd })
  estimatedCostUsd: number;

  @Column("numeric", {
    name: "cost_usd",
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: usd,
  })
  costUsd: number | null;

  @Column("real", { name: "estimated_seconds", nullable: true })
  estimatedSeconds: number | null;

  @Column("boolean", { default: false })
  cached: boolean;

  @Column("jsonb", { nullable: true })
  error: GenerationErrorInfo | null;

  /** The exact-cache key under which this paid result may be reused; null when it may not. */
  @Column("text", { name: "cache_key", nullable: true })
  cacheKey: string | null;

  /** Set on a DEFAULT-mode generation: identical requests attach to it while it runs. */
  @Column("text", { name: "inflight_key", nullable: true })
  inflightKey: string | null;

  /** On a generation attached to an identical running one: that generation's id. */
  @Column("uuid", { name: "inflight_of", nullable: true })
  inflightOf: string | null;

  @Column("jsonb", { name: "cache_hit", nullable: true })
  cacheHit: CacheHitInfo | null;

  /** The quality gate's report on the accepted outputs; null for cached and older results. */
  @Column("jsonb", { nullable: true })
  quality: QualityReportInfo | null;

  /** Held against the budget until the generation settles; 0 once it has. */
  @Column("numeric", {
    name: "reserved_usd",
    precision: 14,
    scale: 6,
    default: 0,
    transformer: usd,
  })
  reservedUsd: number;

  /** W3C trace headers of the trace the generation started in. */
  @Column("jsonb", { name: "trace_context", nullable: true })
  traceContext: Record<string, string> | null;

  /** The month (`YYYY-MM`, UTC) whose budget was reserved and is charged. */
  @Column("text", { name: "budget_period", nullable: true })
  budgetPeriod: string | null;

  @Column("text", { name: "idempotency_key", nullable: true })
  idempotencyKey: string | null;

  /** Hash of the request parameters, compared when an idempotency key is reused. */
  @Column("text", { name: "request_hash" })
  requestHash: string;

  /** Incremented by every state change; subscribers drop events older than what they saw. */
  @Column("integer", { default: 0 })
  version: number;

  @CreateDateColumn({
    name: "created_at",
    type: "timestamptz",
    default: () => "date_trunc('milliseconds', now())",
  })
  createdAt: Date;

  @Column("timestamptz", { name: "updated_at", default: () => "now()" })
  updatedAt: Date;

  @Column("timestamptz", { name: "started_at", nullable: true })
  startedAt: Date | null;

  @Column("timestamptz", { name: "completed_at", nullable: true })
  completedAt: Date | null;
}
