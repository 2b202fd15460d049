/*
 * OpenAI Images, `POST /v1/images/generations` (synchronous). Sources (read through the search tool):
 * - Request and answer (`prompt`, `model`, `n`, `size` per model, `quality` per model,
 *   `response_format` for DALL·E only, GPT image models always answer `b64_json`, PNG by
 *   default; `{created, data[{b64_json, url, revised_prompt}], usage}`):
 *   openai/openai-node `src/resources/images.ts`;
 *   https://developers.openai.com/api/reference/resources/images/methods/generate
 * - Per-image prices: OpenAI's model pages for gpt-image-1 and gpt-image-1-mini, "Image
 *   generation, per image" (read as https://developers.openai.com/ja-JP/api/docs/models/gpt-image-1
 *   and https://developers.openai.com/de-DE/api/docs/models/gpt-image-1-mini).
 *   DALL·E prices appear only on third-party copies, so DALL·E reports no cost.
 * - Retired models: the same reference marks `dall-e-2`/`dall-e-3` retired (2026-05-12) and
 *   `gpt-image-1` shut down (2026-10-23). The adapter still speaks their shapes; what OpenAI
 *   answers for a retired model is not documented: a 404 or `model_not_found` maps to
 *   MODEL_NOT_FOUND, any other 400 to INVALID_INPUT (neither is retried).
 * - Errors `{error:{message, type, param, code}}`; refusals carry `content_policy_violation`
 *   (DALL·E) or `moderation_blocked` (GPT image models); the official SDK retries 408, 409, 429
 *   and ≥ 500 honouring `retry-after-ms` / `Retry-After` (openai/openai-node `src/core.ts`).
 */
import type {
  ProviderAdapter,
  ProviderBatchApi,
  ProviderJobState,
  ProviderRequest,
  SubmitResult,
} from "../provider.adapter";
import { ProviderError, ProviderErrorCode } from "../provider.adapter";
import { providerFetch } from "../provider.http";
import { OpenAIBatchApi } from "./openai-batch.api";
import {
  imageOutput,
  imagePrice,
  imagesCall,
  openAIError,
  type ImagesResponse,
  type OpenAIErrorBody,
} from "./openai-images.request";

export interface OpenAIImagesOptions {
  /** API key, sent as `Authorization: Bearer <key>`. */
  apiKey: string;
  /** @defaultValue "https://api.openai.com/v1" */
  baseUrl?: string;
  /** The call is synchronous, so this deadline covers the whole generation. @defaultValue 120000 */
  timeoutMs?: number;
  /** Sent as `OpenAI-Organization` when set. */
  organization?: string;
}

const DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** Generation happens inside the HTTP call; high-quality GPT images can take over a minute. */
const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * OpenAI Images behind the asynchronous contract: `submit` makes the (synchronous) call and
 * returns the finished job as `state`, so the worker never asks for its status.
 *
 * The requested width and height pick the closest size the model supports (aspect ratio first,
 * then area); the output has that size, which the returned output states. There is no seed and
 * no negative prompt in this API: both are ignored, so a retried generation is not reproducible.
 */
export class OpenAIImagesAdapter implements ProviderAdapter {
  readonly name = "openai";
  readonly supportsWebhooks = false;
  /** OpenAI's Batch API: BATCH-priority generations go through it at half the price. */
  readonly batch: ProviderBatchApi;
  private readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: OpenAIImagesOptions) {
    if (!opts.apiKey) throw new Error("OpenAI needs an API key (OpenAIImagesOptions.apiKey).");
    this.baseUrl = (opts.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.batch = new OpenAIBatchApi({
      name: this.name,
      apiKey: opts.apiKey,
      baseUrl: this.baseUrl,
      organization: opts.organization,
    });
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    const call = imagesCall(this.name, req);
    const answer = await this.generate(call.body);
    return {
      providerJobId: `openai_${req.generationId}_${req.attempt}`,
      state: {
        status: "succeeded",
        outputs: [imageOutput(this.name, answer, call)],
        costUsd: imagePrice(req.model, call.width, call.height),
      },
    };
  }

  /**
   * The job finished (or failed) inside `submit`, and OpenAI keeps nothing to ask about. A
   * status call only happens when that result was lost, e.g. a worker restarted mid-call:
   * the answer is "not found", retryable, so the worker starts a new attempt.
   */
  async getStatus(providerJobId: string): Promise<ProviderJobState> {
    throw new ProviderError(
      `openai: ${providerJobId} ran synchronously and its result is gone; start a new attempt`,
      ProviderErrorCode.JobNotFound,
      true,
    );
  }

  async cancel(_providerJobId: string): Promise<void> {
    // Nothing to cancel: the call either finished inside submit or was abandoned with it.
  }

  private async generate(body: Record<string, unknown>): Promise<ImagesResponse | null> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.apiKey}` };
    if (this.opts.organization) headers["openai-organization"] = this.opts.organization;
    const res = await providerFetch<(ImagesResponse & OpenAIErrorBody) | null>(
      this.name,
      `${this.baseUrl}/images/generations`,
      // These statuses need the body's `error.code` (or OpenAI's retry policy) to map.
      { json: body, headers, timeoutMs: this.timeoutMs, okStatuses: [400, 404, 409, 422] },
    );
    if (res.status >= 400) throw openAIError(this.name, res.status, res.body, res.headers);
    return res.body;
  }
}
