/*
 * WaveSpeedAI, API v3. Sources (read through the search tool):
 * - Submit and result, body fields (`prompt`, `size` as "W*H", `seed`, `enable_sync_mode`):
 *   https://wavespeed.ai/docs/docs-api/flux-dev
 * - `negative_prompt` on video models: https://wavespeed.ai/docs-api/wan-t2v-480p
 * - Envelope `{code, message, data:{id, model, outputs, urls, has_nsfw_contents, status,
 *   created_at, error, timings}}`, `code` = HTTP status, 200 on success:
 *   https://wavespeed.ai/docs/shared/submit-response
 * - Statuses `created | processing | completed | failed`: https://wavespeed.ai/docs/what-are-predictions
 * - Task error codes (1200 moderation, 14xx input, 5xxx server): https://wavespeed.ai/docs/error-codes
 * - Webhooks (`?webhook=`, flat prediction body on completed/failed):
 *   https://wavespeed.ai/docs/how-to-use-webhooks
 * - Webhook signature (`v3,<hex>` HMAC-SHA256 over `{id}.{timestamp}.{body}`, key = secret without
 *   `whsec_`, not base64-decoded, max age 300 s): https://wavespeed.ai/docs/docs-api/verifying_webhook
 * - Delete: https://wavespeed.ai/docs/docs-common-api/prediction-delete
 * - Official SDK: WaveSpeedAI/wavespeed-javascript `src/api/client.ts` (paths, `data.id`,
 *   `cancelled`/`timeout` as further terminal statuses, 1 s default poll interval).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import {
  ProviderError,
  isFinished,
  ProviderErrorCode,
  WebhookVerificationError,
  type ProviderAdapter,
  type ProviderJobState,
  type ProviderOutput,
  type ProviderRequest,
  type SubmitResult,
  type WebhookEvent,
  type WebhookRequest,
} from "../provider.adapter";
import { contentTypeForPath } from "../../common/media-types";
import { errorForStatus, providerFetch } from "../provider.http";

export interface WaveSpeedOptions {
  /** API key, sent as `Authorization: Bearer <key>`. */
  apiKey: string;
  /** @defaultValue "https://api.wavespeed.ai" */
  baseUrl?: string;
  /**
   * The account's webhook secret (`whsec_…`, from `GET /api/v3/webhook/secret`). Without it
   * webhooks cannot be verified, so the adapter reports `supportsWebhooks: false` and is polled.
   */
  webhookSecret?: string;
  /** Deadline of each API call. @defaultValue 30000 */
  timeoutMs?: number;
}

/** The prediction as the API returns it (inside the envelope, or flat in a webhook). */
interface WaveSpeedPrediction {
  id?: unknown;
  model?: string;
  outputs?: unknown;
  has_nsfw_contents?: unknown;
  status?: unknown;
  /** Task error code on failure (0 on success); see the error-codes page. */
  code?: unknown;
  error?: unknown;
}

interface WaveSpeedEnvelope {
  code?: unknown;
  message?: unknown;
  data?: WaveSpeedPrediction;
}

const DEFAULT_BASE_URL = "https://api.wavespeed.ai";
const DEFAULT_TIMEOUT_MS = 30_000;
/** The official SDK polls every second; the API publishes no progress or ETA to do better. */
const POLL_AFTER_MS = 1_000;
/** `WebhookMaxAgeSeconds` in WaveSpeed's verification guide, applied both ways. */
const WEBHOOK_TOLERANCE_SECONDS = 300;

/** Task error codes (https://wavespeed.ai/docs/error-codes) → our code and whether to retry. */
const TASK_ERRORS: Record<number, [code: string, retryable: boolean]> = {
  1200: [ProviderErrorCode.ContentRefused, false],
  1400: [ProviderErrorCode.InvalidInput, false],
  1401: [ProviderErrorCode.InvalidInput, false],
  1402: [ProviderErrorCode.InvalidInput, false],
  1403: [ProviderErrorCode.InvalidInput, false],
  // "Task Failed: check the error message": nothing says the input was at fault.
  1405: [ProviderErrorCode.ProviderError, true],
  5000: [ProviderErrorCode.ProviderError, true],
  5003: [ProviderErrorCode.ProviderError, true],
  5004: [ProviderErrorCode.Timeout, true],
};

/**
 * WaveSpeedAI predictions: submit to the model's path, poll `/predictions/{id}/result`, or
 * receive the signed webhook. Request fields are the common ones (`prompt`, `negative_prompt`,
 * `seed`, `size` as "W*H", `duration`); a model that names a field differently rejects the
 * input with an INVALID_INPUT the worker does not retry. Cost is not reported by the API, so
 * `costUsd` stays undefined and the catalog price applies.
 */
export class WaveSpeedAdapter implements ProviderAdapter {
  readonly name = "wavespeed";
  readonly supportsWebhooks: boolean;
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly signingKey: Buffer | undefined;

  constructor(private readonly opts: WaveSpeedOptions) {
    if (!opts.apiKey) throw new Error("WaveSpeedAI needs an API key (WaveSpeedOptions.apiKey).");
    this.baseUrl = (opts.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // The guide is explicit: strip `whsec_` and use the rest as is, not base64-decoded
    // (unlike Standard Webhooks, whose header names WaveSpeed borrows).
    this.signingKey = opts.webhookSecret
      ? Buffer.from(opts.webhookSecret.replace(/^whsec_/, ""), "utf8")
      : undefined;
    this.supportsWebhooks = this.signingKey !== undefined;
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    const input: Record<string, unknown> = { prompt: req.prompt, seed: req.seed };
    if (req.negativePrompt) input.negative_prompt = req.negativePrompt;
    if (req.width && req.height) input.size = `${req.width}*${req.height}`;
    if (req.durationSeconds !== undefined) input.duration = req.durationSeconds;

    const modelPath = req.model.split("/").map(encodeURIComponent).join("/");
    const webhook =
      req.webhookUrl && this.supportsWebhooks
        ? `?webhook=${encodeURIComponent(req.webhookUrl)}`
        : "";
    const prediction = await this.callForPrediction(`/api/v3/${modelPath}${webhook}`, {
      json: input,
    });
    const state = toState(prediction);
    return {
      providerJobId: prediction.id,
      pollAfterMs: POLL_AFTER_MS,
      // Only a finished prediction is worth handing over; a queued one is polled as usual.
      state: isFinished(state) ? state : undefined,
    };
  }

  async getStatus(providerJobId: string): Promise<ProviderJobState> {
    try {
      const prediction = await this.callForPrediction(
        `/api/v3/predictions/${encodeURIComponent(providerJobId)}/result`,
      );
      return toState(prediction);
    } catch (err) {
      // A 404 here is the prediction, not the model: deleted, or past the 7-day retention.
      // Another attempt (a new prediction) can still succeed.
      if (err instanceof ProviderError && err.code === ProviderErrorCode.ModelNotFound) {
        throw new ProviderError(
          `wavespeed: prediction ${providerJobId} not found`,
          ProviderErrorCode.JobNotFound,
          true,
        );
      }
      throw err;
    }
  }

  /**
   * WaveSpeed documents no cancel, only deletion: `POST /api/v3/predictions/delete` (ignores
   * unknown ids, so repeating it is harmless). Deleting a running prediction is the closest to
   * a cancel; the docs do not promise it stops the compute or its billing.
   */
  async cancel(providerJobId: string): Promise<void> {
    await this.call("/api/v3/predictions/delete", { json: { ids: [providerJobId] } });
  }

  async parseWebhook(req: WebhookRequest, now = new Date()): Promise<WebhookEvent> {
    if (!this.signingKey) {
      throw new WebhookVerificationError("wavespeed: no webhook secret configured");
    }
    const id = req.headers["webhook-id"];
    const timestamp = req.headers["webhook-timestamp"];
    const signatures = req.headers["webhook-signature"];
    if (!id || !timestamp || !signatures) {
      throw new WebhookVerificationError(
        "wavespeed: webhook-id, webhook-timestamp and webhook-signature headers are required",
      );
    }
    if (!/^\d{1,12}$/.test(timestamp)) {
      throw new WebhookVerificationError("wavespeed: malformed webhook-timestamp");
    }

    const expected = createHmac("sha256", this.signingKey)
      .update(`${id}.${timestamp}.`)
      .update(req.rawBody)
      .digest();
    // One `v3,<hex>` entry in practice; a space-separated list is accepted as Standard
    // Webhooks does, so a future key rotation does not break verification.
    const matches = signatures.split(" ").some((entry) => {
      const [version, hex] = entry.split(",");
      if (version !== "v3" || !hex || !/^[0-9a-f]{64}$/i.test(hex)) return false;
      return timingSafeEqual(Buffer.from(hex, "hex"), expected);
    });
    if (!matches) throw new WebhookVerificationError("wavespeed: webhook signature does not match");

    const ageSeconds = Math.floor(now.getTime() / 1000) - Number(timestamp);
    if (Math.abs(ageSeconds) > WEBHOOK_TOLERANCE_SECONDS) {
      throw new WebhookVerificationError(
        `wavespeed: webhook timestamp is ${ageSeconds > 0 ? "too old" : "in the future"}`,
      );
    }

    let prediction: WaveSpeedPrediction;
    try {
      prediction = JSON.parse(req.rawBody.toString("utf8")) as WaveSpeedPrediction;
    } catch {
      throw new WebhookVerificationError("wavespeed: webhook body is not JSON");
    }
    if (!prediction || typeof prediction.id !== "string" || !prediction.id) {
      throw new WebhookVerificationError("wavespeed: webhook body has no prediction id");
    }
    let state: ProviderJobState;
    try {
      state = toState(prediction);
    } catch (err) {
      throw new WebhookVerificationError((err as Error).message);
    }
    return { deliveryId: id, providerJobId: prediction.id, state };
  }

  /** One API call: the HTTP status mapped by `providerFetch`, then the envelope's own `code`. */
  private async call(path: string, opts: { json?: unknown } = {}): Promise<WaveSpeedEnvelope> {
    const { body, headers } = await providerFetch<WaveSpeedEnvelope | null>(
      this.name,
      `${this.baseUrl}${path}`,
      { json: opts.json, headers: this.authHeaders(), timeoutMs: this.timeoutMs },
    );
    return checkEnvelope(this.name, body, headers);
  }

  private async callForPrediction(
    path: string,
    opts: { json?: unknown } = {},
  ): Promise<WaveSpeedPrediction & { id: string }> {
    const prediction = (await this.call(path, opts)).data;
    if (!prediction || typeof prediction.id !== "string" || !prediction.id) {
      throw new ProviderError(
        `${this.name}: answer has no prediction id`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    return prediction as WaveSpeedPrediction & { id: string };
  }

  private authHeaders(): Record<string, string> {
    return { authorization: `Bearer ${this.opts.apiKey}` };
  }
}

/**
 * The envelope's `code` is an HTTP status; anything but 200 is an error even when the HTTP
 * status was 200. Task codes (≥ 1000) in that place map as a failed task would.
 */
function checkEnvelope(
  provider: string,
  envelope: WaveSpeedEnvelope | null,
  headers: Headers,
): WaveSpeedEnvelope {
  if (!envelope || typeof envelope !== "object") {
    throw new ProviderError(
      `${provider}: unreadable answer`,
      ProviderErrorCode.ProviderError,
      true,
    );
  }
  const code = typeof envelope.code === "number" ? envelope.code : 200;
  if (code === 200) return envelope;
  if (code >= 1000) throw taskError(code, envelope.message);
  throw errorForStatus(provider, code, envelope, headers);
}

function toState(p: WaveSpeedPrediction): ProviderJobState {
  switch (p.status) {
    case "created":
      return { status: "queued", pollAfterMs: POLL_AFTER_MS };
    case "processing":
      return { status: "processing", pollAfterMs: POLL_AFTER_MS };
    case "completed": {
      if (Array.isArray(p.has_nsfw_contents) && p.has_nsfw_contents.some((flag) => flag === true)) {
        return {
          status: "failed",
          error: new ProviderError(
            "wavespeed: output flagged as NSFW",
            ProviderErrorCode.ContentRefused,
            false,
          ),
        };
      }
      const urls = Array.isArray(p.outputs)
        ? p.outputs.filter((u): u is string => typeof u === "string" && u.length > 0)
        : [];
      if (urls.length === 0) {
        return {
          status: "failed",
          error: new ProviderError(
            "wavespeed: completed without outputs",
            ProviderErrorCode.ProviderError,
            true,
          ),
        };
      }
      return { status: "succeeded", outputs: urls.map(toOutput) };
    }
    case "failed":
      return { status: "failed", error: taskError(p.code, p.error) };
    // Terminal statuses the official SDK knows besides the documented four.
    case "cancelled":
    case "canceled":
      return { status: "canceled" };
    case "timeout":
      return {
        status: "failed",
        error: new ProviderError(
          "wavespeed: prediction timed out",
          ProviderErrorCode.Timeout,
          true,
        ),
      };
    default:
      throw new ProviderError(
        `wavespeed: unknown prediction status ${JSON.stringify(p.status)}`,
        ProviderErrorCode.ProviderError,
        true,
      );
  }
}

function taskError(code: unknown, message: unknown): ProviderError {
  const n = typeof code === "number" ? code : 0;
  const [ourCode, retryable] =
    TASK_ERRORS[n] ??
    (n >= 1000 && n < 2000
      ? [ProviderErrorCode.InvalidInput, false]
      : [ProviderErrorCode.ProviderError, true]);
  const text = typeof message === "string" && message ? message.slice(0, 300) : "prediction failed";
  return new ProviderError(`wavespeed: ${text}${n ? ` (code ${n})` : ""}`, ourCode, retryable);
}

function toOutput(url: string): ProviderOutput {
  try {
    return { url, contentType: contentTypeForPath(new URL(url).pathname) };
  } catch {
    // Not a URL we can parse: leave the type to whoever downloads it.
    return { url };
  }
}
