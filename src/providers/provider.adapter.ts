import type { MediaType } from "../entities";

/** What gengate asks a provider for. `model` is the provider's own model id. */
export interface ProviderRequest {
  generationId: string;
  model: string;
  mediaType: MediaType;
  prompt: string;
  negativePrompt?: string;
  seed: number;
  width?: number;
  height?: number;
  durationSeconds?: number;
  /** Where the provider should report progress and completion, when a public URL exists. */
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
      progress?: number;
      queuePosition?: number;
      pollAfterMs?: number;
    }
  | { status: "succeeded"; outputs: ProviderOutput[]; costUsd?: number }
  | { status: "failed"; error: ProviderError }
  | { status: "canceled" };

export interface SubmitResult {
  providerJobId: string;
  /** When the provider expects the next status to be worth asking for. */
  pollAfterMs?: number;
}

/**
 * One provider, behind the same three calls. The contract: `submit` returns as soon as the
 * provider has accepted the job (never waits for the result); `getStatus` is side-effect
 * free and safe to repeat; `cancel` is best effort. Errors are thrown as `ProviderError` with
 * a retryable flag, so the worker can decide to fall over without knowing the provider.
 */
export interface ProviderAdapter {
  readonly name: string;
  submit(req: ProviderRequest): Promise<SubmitResult>;
  getStatus(providerJobId: string): Promise<ProviderJobState>;
  cancel(providerJobId: string): Promise<void>;
}

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
