import type { MediaType } from "../entities";

/** What gengate asks a provider for. `model` is the provider's own model id. */
export interface ProviderRequest {
  generationId: string;
  /** Attempt number within the generation (1, 2, ...). */
  attempt: number;
  model: string;
  mediaType: MediaType;
  prompt: string;
  negativePrompt?: string;
  seed: number;
  width?: number;
  height?: number;
  durationSeconds?: number;
  /**
   * Where the provider should report progress and completion. Set only when a public base
   * URL is configured and the adapter `supportsWebhooks`; otherwise the job is polled.
   */
  webhookUrl?: string;
}

/** One output as a provider returns it: a URL to fetch (which may expire) or the bytes. */
export interface ProviderOutput {
  url?: string;
  data?: Buffer;
  contentType?: string;
  width?: number;
  height?: number;
  durationSeconds?: number;
}

export type ProviderJobState =
  | {
      status: "queued" | "processing";
      /** 0..1 when the provider says (or its logs show) how far it is. */
      progress?: number;
      queuePosition?: number;
      /** When the provider expects the next status to be worth asking for. */
      pollAfterMs?: number;
    }
  | { status: "succeeded"; outputs: ProviderOutput[]; costUsd?: number }
  | { status: "failed"; error: ProviderError }
  | { status: "canceled" };

/** A state the provider will not move out of. */
export type FinishedJobState = Exclude<ProviderJobState, { status: "queued" | "processing" }>;

export function isFinished(state: ProviderJobState): state is FinishedJobState {
  return state.status !== "queued" && state.status !== "processing";
}

/** Progress as gengate stores it: 0..1 whatever a provider reported. */
export function clampProgress(progress: number | undefined): number {
  return Math.max(0, Math.min(1, progress ?? 0));
}

export interface SubmitResult {
  providerJobId: string;
  pollAfterMs?: number;
  /**
   * The finished job, for synchronous providers (OpenAI Images) or when the provider answered
   * at once: the worker then finishes without a status call.
   */
  state?: ProviderJobState;
}

/** An inbound webhook exactly as received: the raw body is what signatures cover. */
export interface WebhookRequest {
  /** Header names lower-cased. */
  headers: Record<string, string | undefined>;
  rawBody: Buffer;
}

export interface WebhookEvent {
  /** The provider's id for this delivery (same across its retries): replays are refused by it. */
  deliveryId: string;
  providerJobId: string;
  state: ProviderJobState;
}

/**
 * One provider, behind the same calls. The contract: `submit` returns as soon as the provider
 * has accepted the job (never waits for the result, unless the provider is synchronous);
 * `getStatus` is side-effect free and safe to repeat; `cancel` is best effort. Every failure
 * is thrown as a `ProviderError` whose `retryable` flag tells the worker whether another try
 * (here or at the next provider) can help. Left out: retries and fallback, which are the
 * worker's policy, not the adapter's.
 */
export interface ProviderAdapter {
  readonly name: string;
  /** Whether `submit` can take a `webhookUrl` and `parseWebhook` understands the calls. */
  readonly supportsWebhooks: boolean;
  submit(req: ProviderRequest): Promise<SubmitResult>;
  getStatus(providerJobId: string): Promise<ProviderJobState>;
  cancel(providerJobId: string): Promise<void>;
  /**
   * Verifies an inbound webhook (signature, timestamp within tolerance) and parses it.
   * Throws `WebhookVerificationError` for anything forged, stale or malformed.
   */
  parseWebhook?(req: WebhookRequest, now?: Date): Promise<WebhookEvent>;
  /**
   * The part of a job id that this provider's webhooks name (`WebhookEvent.providerJobId`),
   * when it is not the whole id. @defaultValue the id itself
   */
  webhookKey?(providerJobId: string): string;
  /** The provider's batch API, where it has one (BATCH-priority generations use it). */
  readonly batch?: ProviderBatchApi;
}

/** One request of a batch; its result comes back under `customId`. */
export interface BatchItem {
  customId: string;
  request: ProviderRequest;
}

export type BatchState =
  | {
      status: "pending";
      /** How many items have finished so far, when the provider says. */
      finished?: number;
      pollAfterMs?: number;
    }
  /**
   * Every item has a final state, or never will: an item missing from `results` (a batch that
   * expired or was cancelled with work left) did not run and may be tried again elsewhere.
   */
  | { status: "completed"; results: Map<string, FinishedJobState> }
  /** The provider refused or lost the batch as a whole: none of its items ran. */
  | { status: "failed"; error: ProviderError };

/**
 * A provider's batch API, modelled on OpenAI's Batch: many requests sent at once, each named
 * by a custom id, answered together later at a discount. The contract: `submit` with the same
 * `idempotencyKey` creates the batch at most once, however often it is called (a worker that
 * died between the provider's answer and recording it calls again; a provider without
 * idempotency keys documents how close it comes); `getStatus` is side-effect free; `cancel`
 * is best effort, for a batch gengate gave up on. Left out: cancelling one request of a batch
 * (one canceled generation does not cancel its batch; its result is simply not used) and
 * partial results before the batch completes.
 */
export interface ProviderBatchApi {
  /** Fraction of the synchronous price a batched request costs less (0.5: half price). */
  readonly discount: number;
  /** Most items one batch may hold. */
  readonly maxItems: number;
  /**
   * How long a submitted batch may take before gengate gives up on it (cancels it and sends
   * its requests one by one): the provider's completion window and some slack. Generations in
   * a live batch are not held to MAX_GENERATION_SECONDS.
   * @defaultValue MAX_GENERATION_SECONDS
   */
  readonly deadlineMs?: number;
  submit(
    items: BatchItem[],
    opts: {
      model: string;
      idempotencyKey: string;
      /**
       * When gengate collected the batch: no submission of it is older, so a provider without
       * idempotency keys can stop looking for an earlier one there.
       */
      collectedAt?: Date;
    },
  ): Promise<{ providerBatchId: string; pollAfterMs?: number }>;
  getStatus(providerBatchId: string): Promise<BatchState>;
  cancel?(providerBatchId: string): Promise<void>;
}

/** Stable codes the worker and clients see. */
export const ProviderErrorCode = {
  /** The provider refused our credentials (401/403): configuration, not retryable. */
  Auth: "PROVIDER_AUTH",
  /** The model does not exist at this provider (404) or is retired. */
  ModelNotFound: "MODEL_NOT_FOUND",
  /** The provider rejected the input (400/422): another try would fail the same way. */
  InvalidInput: "INVALID_INPUT",
  /** Content policy refusal. */
  ContentRefused: "CONTENT_REFUSED",
  RateLimited: "RATE_LIMITED",
  /** 5xx, network errors, malformed answers. */
  ProviderError: "PROVIDER_ERROR",
  Timeout: "PROVIDER_TIMEOUT",
  JobNotFound: "PROVIDER_JOB_NOT_FOUND",
} as const;

export class ProviderError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "ProviderError";
  }
}

export class WebhookVerificationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}
