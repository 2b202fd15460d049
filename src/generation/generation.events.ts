import type {
  AttemptEntity,
  CacheHitInfo,
  GenerationEntity,
  GenerationErrorInfo,
  GenerationStatus,
  MediaType,
  Priority,
  QualityReportInfo,
  StoredOutput,
} from "../entities";
import { Topic, type GenerationEventType, type PubSub } from "../infra/pubsub/pubsub";

export interface AttemptSnapshot {
  number: number;
  provider: string;
  model: string;
  status: string;
  error: string | null;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  costUsd: number | null;
  /** The provider batch the attempt was sent in; null for a request of its own. */
  batchId: string | null;
  /** The quality gate's report on its outputs; null when none was judged. */
  quality: QualityReportInfo | null;
}

/**
 * A generation as it travels in events and reaches GraphQL: plain JSON, dates as ISO strings,
 * outputs as object-store keys (URLs are signed when read, so they never go stale in transit).
 */
export interface GenerationSnapshot {
  id: string;
  accountId: string;
  userId: string;
  status: GenerationStatus;
  progress: number;
  mediaType: MediaType;
  prompt: string;
  negativePrompt: string | null;
  model: string;
  provider: string | null;
  seed: number;
  priority: Priority;
  width: number | null;
  height: number | null;
  durationSeconds: number | null;
  /** Models the request named to fall back to. */
  fallbackModels: string[];
  /** The highest model quality the user's tier allows, when it limits one. */
  maxQuality: number | null;
  outputs: StoredOutput[];
  estimatedCostUsd: number;
  costUsd: number | null;
  estimatedSeconds: number | null;
  cached: boolean;
  cacheHit: CacheHitInfo | null;
  /** DEFAULT, BYPASS or REFRESH, as asked. */
  cacheMode: string;
  /** For a generation attached to an identical running one: that generation. */
  inflightOf: string | null;
  error: GenerationErrorInfo | null;
  /** The quality gate's report on the accepted outputs. */
  quality: QualityReportInfo | null;
  attempts: AttemptSnapshot[];
  metadata: unknown;
  /** Whether the request gave a callback URL; unknown where absent. */
  hasCallback?: boolean;
  version: number;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
}

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

export function toSnapshot(g: GenerationEntity, attempts: AttemptEntity[]): GenerationSnapshot {
  return {
    id: g.id,
    accountId: g.accountId,
    userId: g.userId,
    status: g.status,
    progress: g.progress,
    mediaType: g.mediaType,
    prompt: g.prompt,
    negativePrompt: g.negativePrompt,
    model: g.model,
    provider: g.provider,
    seed: g.seed,
    priority: g.priority,
    width: g.params.width ?? null,
    height: g.params.height ?? null,
    durationSeconds: g.params.durationSeconds ?? null,
    fallbackModels: g.params.fallbackModels ?? [],
    maxQuality: g.params.maxQuality ?? null,
    outputs: g.outputs,
    estimatedCostUsd: g.estimatedCostUsd,
    costUsd: g.costUsd,
    estimatedSeconds: g.estimatedSeconds,
    cached: g.cached,
    cacheHit: g.cacheHit,
    cacheMode: g.params.cacheMode ?? "DEFAULT",
    inflightOf: g.inflightOf,
    error: g.error,
    quality: g.quality ?? null,
    metadata: g.params.metadata ?? null,
    hasCallback: g.params.callbackUrl != null,
    attempts: attempts
      .slice()
      .sort((a, b) => a.number - b.number)
      .map((a) => ({
        number: a.number,
        provider: a.provider,
        model: a.model,
        status: a.status,
        error: a.error,
        startedAt: iso(a.startedAt)!,
        endedAt: iso(a.endedAt),
        durationMs: a.durationMs,
        costUsd: a.costUsd,
        batchId: a.batchId ?? null,
        quality: a.quality ?? null,
      })),
    version: g.version,
    createdAt: iso(g.createdAt)!,
    startedAt: iso(g.startedAt),
    completedAt: iso(g.completedAt),
  };
}

export const TERMINAL_STATUSES: readonly GenerationStatus[] = ["SUCCEEDED", "FAILED", "CANCELED"];

export function isTerminal(status: GenerationStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Publishes every state change on the generation's topic, its user's and its account's. */
export class GenerationEvents {
  constructor(private readonly pubsub: PubSub) {}

  async publish(type: GenerationEventType, generation: GenerationSnapshot): Promise<void> {
    const payload = { type, at: new Date().toISOString(), generation };
    await Promise.all([
      this.pubsub.publish(Topic.Generation, generation.id, payload),
      this.pubsub.publish(
        Topic.UserGenerations,
        userTopicKey(generation.accountId, generation.userId),
        payload,
      ),
      this.pubsub.publish(Topic.AccountGenerations, generation.accountId, payload),
    ]);
  }
}

export function userTopicKey(accountId: string, userId: string): string {
  // The user id is the partner's own string: encode it so no value can forge another key.
  return `${accountId}:${Buffer.from(userId).toString("base64url")}`;
}

/** The event type that describes a generation's current state, for a subscriber's first message. */
export function eventTypeForStatus(
  status: GenerationStatus,
  progress: number,
): GenerationEventType {
  switch (status) {
    case "QUEUED":
    case "BATCHED":
      return "QUEUED";
    case "PROCESSING":
      return progress > 0 ? "PROGRESS" : "STARTED";
    default:
      return status;
  }
}
