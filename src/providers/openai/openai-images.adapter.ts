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
import {
  ProviderError,
  ProviderErrorCode,
  type ProviderAdapter,
  type ProviderJobState,
  type ProviderRequest,
  type SubmitResult,
} from "../provider.adapter";
import { errorForStatus, providerFetch } from "../provider.http";

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

interface ImagesResponse {
  created?: number;
  data?: Array<{ b64_json?: string; url?: string; revised_prompt?: string }>;
}

interface OpenAIErrorBody {
  error?: { message?: string; type?: string; param?: string | null; code?: string | null };
}

/** What the API accepts for one model family, and what we ask of it. */
interface ImageModelFamily {
  /** Supported sizes; the first is the API's default, used when no size is asked for. */
  sizes: ReadonlyArray<readonly [width: number, height: number]>;
  /** Quality we request; fixed so the price is known (the catalog prices these qualities). */
  quality?: string;
  /** DALL·E answers URLs unless asked for base64; GPT image models reject the parameter. */
  responseFormat?: "b64_json";
}

const DALL_E_2: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [512, 512],
    [256, 256],
  ],
  // `standard` is DALL·E 2's only quality: left out.
  responseFormat: "b64_json",
};

const DALL_E_3: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [1792, 1024],
    [1024, 1792],
  ],
  quality: "standard",
  responseFormat: "b64_json",
};

/** Every GPT image model (`gpt-image-1`, `gpt-image-1-mini`, `gpt-image-1.5`, …). */
const GPT_IMAGE: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [1536, 1024],
    [1024, 1536],
  ],
  quality: "medium",
};

const FAMILIES: Record<string, ImageModelFamily> = { "dall-e-2": DALL_E_2, "dall-e-3": DALL_E_3 };

/** USD per image by model, then `${quality} ${size}`, from OpenAI's model pages. */
const PRICES: Record<string, Record<string, number>> = {
  "gpt-image-1": {
    "low 1024x1024": 0.011,
    "low 1024x1536": 0.016,
    "low 1536x1024": 0.016,
    "medium 1024x1024": 0.042,
    "medium 1024x1536": 0.063,
    "medium 1536x1024": 0.063,
    "high 1024x1024": 0.167,
    "high 1024x1536": 0.25,
    "high 1536x1024": 0.25,
  },
  "gpt-image-1-mini": {
    "low 1024x1024": 0.005,
    "low 1024x1536": 0.006,
    "low 1536x1024": 0.006,
    "medium 1024x1024": 0.011,
    "medium 1024x1536": 0.015,
    "medium 1536x1024": 0.015,
    "high 1024x1024": 0.036,
    "high 1024x1536": 0.052,
    "high 1536x1024": 0.052,
  },
};

/** Refusal codes: DALL·E's and the GPT image models'. */
const REFUSAL_CODES = new Set(["content_policy_violation", "moderation_blocked"]);

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
  private readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: OpenAIImagesOptions) {
    if (!opts.apiKey) throw new Error("OpenAI needs an API key (OpenAIImagesOptions.apiKey).");
    this.baseUrl = (opts.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    if (req.mediaType !== "IMAGE") {
      throw new ProviderError(
        `openai: ${req.model} generates images, not ${req.mediaType.toLowerCase()}`,
        ProviderErrorCode.InvalidInput,
        false,
      );
    }
    const family = FAMILIES[req.model] ?? GPT_IMAGE;
    const [width, height] = closestSize(family.sizes, req.width, req.height);
    const size = `${width}x${height}`;
    const body: Record<string, unknown> = { model: req.model, prompt: req.prompt, n: 1, size };
    if (family.quality) body.quality = family.quality;
    if (family.responseFormat) body.response_format = family.responseFormat;

    const answer = await this.generate(body);
    const b64 = answer?.data?.[0]?.b64_json;
    if (!b64) {
      throw new ProviderError("openai: answer has no image", ProviderErrorCode.ProviderError, true);
    }
    const costUsd = family.quality ? PRICES[req.model]?.[`${family.quality} ${size}`] : undefined;
    return {
      providerJobId: `openai_${req.generationId}_${req.attempt}`,
      state: {
        status: "succeeded",
        outputs: [{ data: Buffer.from(b64, "base64"), contentType: "image/png", width, height }],
        costUsd,
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
    if (res.status >= 400) throw errorFor(this.name, res.status, res.body, res.headers);
    return res.body;
  }
}

function errorFor(
  provider: string,
  status: number,
  body: OpenAIErrorBody | null,
  headers: Headers,
): ProviderError {
  const code = body?.error?.code ?? undefined;
  const message = `${provider}: HTTP ${status}: ${body?.error?.message?.slice(0, 300) ?? "error"}`;
  if (code && REFUSAL_CODES.has(code)) {
    return new ProviderError(message, ProviderErrorCode.ContentRefused, false);
  }
  if (code === "model_not_found") {
    return new ProviderError(message, ProviderErrorCode.ModelNotFound, false);
  }
  // The official SDK retries conflicts (409) like rate limits.
  if (status === 409) return new ProviderError(message, ProviderErrorCode.ProviderError, true);
  return errorForStatus(provider, status, body, headers);
}

/** The supported size nearest in aspect ratio, then in area (both compared as log ratios). */
function closestSize(
  sizes: ImageModelFamily["sizes"],
  width: number | undefined,
  height: number | undefined,
): readonly [number, number] {
  const w = width ?? height;
  const h = height ?? width;
  if (!w || !h) return sizes[0]!;
  const distance = ([sw, sh]: readonly [number, number]) => ({
    aspect: Math.abs(Math.log(sw / sh) - Math.log(w / h)),
    area: Math.abs(Math.log((sw * sh) / (w * h))),
  });
  return [...sizes].sort((a, b) => {
    const [da, db] = [distance(a), distance(b)];
    return Math.abs(da.aspect - db.aspect) > 1e-9 ? da.aspect - db.aspect : da.area - db.area;
  })[0]!;
}
