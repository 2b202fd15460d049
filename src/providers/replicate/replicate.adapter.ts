/*
 * Replicate's predictions API, as documented by Replicate:
 * - Create (async, never `Prefer: wait`): https://replicate.com/docs/topics/predictions/create-a-prediction
 *   and https://replicate.com/docs/reference/http#predictions.create ,
 *   https://replicate.com/docs/reference/http#models.predictions.create
 * - Get / cancel: https://replicate.com/docs/reference/http#predictions.get ,
 *   https://replicate.com/docs/reference/http#predictions.cancel
 * - Statuses (starting, processing, succeeded, failed, canceled, aborted):
 *   https://replicate.com/docs/topics/predictions/lifecycle
 * - 429 body `{"detail":"Request was throttled. Your rate limit resets in ~30s."}`:
 *   https://replicate.com/docs/topics/predictions/rate-limits
 * - 422 body with `invalid_fields`:
 *   https://replicate.com/changelog/2024-05-01-improved-validation-for-api-prediction-payloads
 * - Webhooks (body = the prediction; `webhook_events_filter`; Standard Webhooks signature):
 *   https://replicate.com/docs/topics/webhooks/setup-webhook ,
 *   https://replicate.com/docs/topics/webhooks/receive-webhook ,
 *   https://replicate.com/docs/topics/webhooks/verify-webhook
 * - Official client: replicate/replicate-javascript `lib/predictions.js` (endpoint choice),
 *   `lib/util.js` (`parseProgressFromLogs`, `validateWebhook`), `index.js` (errors, retries).
 */
import { timingSafeEqual } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import {
  ProviderError,
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

export interface ReplicateOptions {
  /** API token, sent as `Authorization: Bearer <token>`. */
  apiToken: string;
  /** @defaultValue "https://api.replicate.com/v1" */
  baseUrl?: string;
  /**
   * The account's webhook signing secret (`whsec_…`, from `GET /v1/webhooks/default/secret`).
   * Without it every inbound webhook is refused, since none can be verified.
   */
  webhookSecret?: string;
  /**
   * The adapter's name in the registry. Lets the same protocol client serve another
   * Replicate-style server (a self-hosted or proxy endpoint) under its own name.
   * @defaultValue "replicate"
   */
  name?: string;
  /** Deadline of each HTTP call. @defaultValue 30000 */
  timeoutMs?: number;
}

const DEFAULTS = {
  baseUrl: "https://api.replicate.com/v1",
  name: "replicate",
  timeoutMs: 30_000,
} as const;

/** Events worth a webhook: the first and last are always sent, logs carry progress. */
const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"] as const;

/** Standard Webhooks' reference tolerance; Replicate does not publish its own. */
const WEBHOOK_TOLERANCE_SECONDS = 5 * 60;

// A prediction sits in `starting` while a worker cold-boots, which takes seconds; once it
// runs, a second between looks keeps progress live without nearing the 3000 requests/min
// limit that polling shares with every other endpoint.
const POLL_STARTING_MS = 2_000;
const POLL_PROCESSING_MS = 1_000;

/** Same cap `providerFetch` puts on Retry-After: beyond it the worker's backoff applies. */
const MAX_THROTTLE_HINT_MS = 60_000;

/** Replicate's prediction object: only the fields this adapter reads. */
const predictionSchema = z.object({
  id: z.string().min(1),
  status: z.string(),
  output: z.unknown().optional(),
  error: z.unknown().optional(),
  logs: z.string().nullish(),
});
type Prediction = z.infer<typeof predictionSchema>;

/**
 * Replicate predictions behind the provider interface. `submit` creates an async prediction
 * (never `Prefer: wait`: a worker slot is not held while a model runs) and, given a webhook
 * URL, asks Replicate to call it on start, logs, output and completion; `parseWebhook`
 * verifies those calls (Standard Webhooks) and maps them exactly as `getStatus` would.
 *
 * Cost is left out: Replicate reports `metrics.predict_time` but no price, so `costUsd` stays
 * undefined and the model catalog prices the run.
 */
export class ReplicateAdapter implements ProviderAdapter {
  readonly name: string;
  readonly supportsWebhooks = true;
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly authorization: string;
  private readonly signer?: Webhook;

  constructor(opts: ReplicateOptions) {
    this.name = opts.name ?? DEFAULTS.name;
    if (!opts.apiToken) throw new Error(`${this.name}: apiToken is required`);
    this.authorization = `Bearer ${opts.apiToken}`;
    this.baseUrl = (opts.baseUrl ?? DEFAULTS.baseUrl).replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
    if (opts.webhookSecret) this.signer = webhookSigner(this.name, opts.webhookSecret);
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    const { path, version } = createEndpoint(this.name, req.model);
    const body: Record<string, unknown> = { input: replicateInput(req) };
    if (version) body.version = version;
    if (req.webhookUrl) {
      body.webhook = req.webhookUrl;
      body.webhook_events_filter = WEBHOOK_EVENTS;
    }
    const prediction = await this.prediction("POST", path, body);
    const state = this.toState(prediction);
    if (state.status === "queued" || state.status === "processing")
      return { providerJobId: prediction.id, pollAfterMs: state.pollAfterMs };
    return { providerJobId: prediction.id, state };
  }

  async getStatus(providerJobId: string): Promise<ProviderJobState> {
    try {
      return this.toState(
        await this.prediction("GET", `/predictions/${encodeURIComponent(providerJobId)}`),
      );
    } catch (err) {
      throw jobNotFound(err, providerJobId);
    }
  }

  async cancel(providerJobId: string): Promise<void> {
    // A finished prediction cannot be canceled; whatever form that answer takes (the
    // unchanged prediction, 404, 409), there is nothing left to stop.
    await this.request("POST", `/predictions/${encodeURIComponent(providerJobId)}/cancel`, {
      alsoOk: [404, 409],
    });
  }

  async parseWebhook(req: WebhookRequest, now: Date = new Date()): Promise<WebhookEvent> {
    if (!this.signer)
      throw new WebhookVerificationError(`${this.name} webhook secret not configured`);
    const id = req.headers["webhook-id"];
    const timestamp = req.headers["webhook-timestamp"];
    const signatures = req.headers["webhook-signature"];
    if (!id || !timestamp || !signatures) {
      throw new WebhookVerificationError(
        `${this.name} webhook: missing webhook-id, webhook-timestamp or webhook-signature header`,
      );
    }
    // standardwebhooks' verify() checks the timestamp against Date.now() and takes no clock,
    // so the tolerance is checked here against `now`; the library still signs (it owns the
    // whsec_ key decoding and the HMAC) and the comparison is constant-time.
    if (!/^\d{1,12}$/.test(timestamp)) {
      throw new WebhookVerificationError(`${this.name} webhook: malformed webhook-timestamp`);
    }
    const sentAt = Number(timestamp);
    const skew = Math.floor(now.getTime() / 1000) - sentAt;
    if (skew > WEBHOOK_TOLERANCE_SECONDS)
      throw new WebhookVerificationError(`${this.name} webhook: timestamp too old`);
    if (skew < -WEBHOOK_TOLERANCE_SECONDS)
      throw new WebhookVerificationError(`${this.name} webhook: timestamp too far in the future`);
    const expected = this.signer.sign(id, new Date(sentAt * 1000), req.rawBody);
    if (!signatures.split(" ").some((candidate) => sameSignature(candidate, expected))) {
      throw new WebhookVerificationError(`${this.name} webhook: no matching signature`);
    }

    let prediction: Prediction;
    let state: ProviderJobState;
    try {
      prediction = predictionSchema.parse(JSON.parse(req.rawBody.toString("utf8")));
      state = this.toState(prediction);
    } catch {
      throw new WebhookVerificationError(`${this.name} webhook: body is not a prediction`);
    }
    return { deliveryId: id, providerJobId: prediction.id, state };
  }

  /** Maps a prediction to a job state; `getStatus`, `submit` and webhooks all go through it. */
  private toState(p: Prediction): ProviderJobState {
    switch (p.status) {
      case "starting":
        return { status: "queued", pollAfterMs: POLL_STARTING_MS };
      case "processing": {
        const progress = progressFromLogs(p.logs);
        return {
          status: "processing",
          ...(progress === undefined ? {} : { progress }),
          pollAfterMs: POLL_PROCESSING_MS,
        };
      }
      case "succeeded": {
        const outputs = collectOutputs(p.output);
        if (outputs.length === 0) {
          return {
            status: "failed",
            error: new ProviderError(
              `${this.name}: prediction ${p.id} succeeded without any file output`,
              ProviderErrorCode.ProviderError,
              true,
            ),
          };
        }
        // No price in the answer (only metrics.predict_time): the catalog prices the run.
        return { status: "succeeded", outputs, costUsd: undefined };
      }
      case "failed":
        return { status: "failed", error: this.failure(p) };
      case "canceled":
      case "aborted":
        return { status: "canceled" };
      default:
        throw new ProviderError(
          `${this.name}: prediction ${p.id} has an unknown status "${p.status}"`,
          ProviderErrorCode.ProviderError,
          true,
        );
    }
  }

  private failure(p: Prediction): ProviderError {
    const text = typeof p.error === "string" && p.error ? p.error : JSON.stringify(p.error ?? null);
    const message = `${this.name}: prediction failed: ${text.slice(0, 300)}`;
    // Safety checkers fail the prediction rather than the request: "NSFW content detected",
    // "flagged as sensitive (E005)". The same prompt would be refused again.
    if (/nsfw|safety|flagged as sensitive|\bE005\b/i.test(text))
      return new ProviderError(message, ProviderErrorCode.ContentRefused, false);
    return new ProviderError(message, ProviderErrorCode.ProviderError, true);
  }

  /** A call whose answer is a prediction (create, get). */
  private async prediction(
    method: "GET" | "POST",
    path: string,
    json?: unknown,
  ): Promise<Prediction> {
    const parsed = predictionSchema.safeParse(await this.request(method, path, { json }));
    if (!parsed.success) {
      throw new ProviderError(
        `${this.name}: malformed prediction in the answer to ${method} ${path}`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    return parsed.data;
  }

  /**
   * One API call through `providerFetch`. 422 and 429 bodies are read here because Replicate
   * says more in them than the status does: which version is missing, when the limit resets.
   */
  private async request(
    method: "GET" | "POST",
    path: string,
    opts: { json?: unknown; alsoOk?: number[] } = {},
  ): Promise<unknown> {
    const res = await providerFetch<unknown>(this.name, `${this.baseUrl}${path}`, {
      method,
      json: opts.json,
      headers: { authorization: this.authorization },
      timeoutMs: this.timeoutMs,
      okStatuses: [422, 429, ...(opts.alsoOk ?? [])],
    });
    if (res.status === 422 || res.status === 429)
      throw refineError(this.name, res.status, res.body, res.headers);
    return res.body;
  }
}

function webhookSigner(name: string, secret: string): Webhook {
  if (!secret.startsWith("whsec_")) {
    throw new Error(
      `${name}: webhookSecret must be the whsec_… key from GET /v1/webhooks/default/secret`,
    );
  }
  try {
    return new Webhook(secret);
  } catch (err) {
    throw new Error(`${name}: webhookSecret is not a valid whsec_ key (${(err as Error).message})`);
  }
}

/**
 * `owner/name` is an official model, run through its own endpoint; `owner/name:version`
 * pins a version through `/predictions`, which takes the bare version id (as the official
 * client sends it).
 */
function createEndpoint(name: string, model: string): { path: string; version?: string } {
  const match = /^([\w.-]+)\/([\w.-]+)(?::([0-9a-f]{6,}))?$/i.exec(model);
  if (!match) {
    throw new ProviderError(
      `${name}: model "${model}" is neither owner/name nor owner/name:version`,
      ProviderErrorCode.ModelNotFound,
      false,
    );
  }
  const [, owner, modelName, version] = match;
  if (version) return { path: "/predictions", version };
  return {
    path: `/models/${encodeURIComponent(owner!)}/${encodeURIComponent(modelName!)}/predictions`,
  };
}

/**
 * The inputs most Replicate image, video and audio models share. Models ignore inputs they do
 * not declare (validation is strict only at the top level of the body), so sending
 * `negative_prompt` or `width` to a model without them is harmless. FLUX models prefer
 * `aspect_ratio`; width and height are kept because they are exact and widely accepted.
 */
export function replicateInput(req: ProviderRequest): Record<string, unknown> {
  const input: Record<string, unknown> = { prompt: req.prompt, seed: req.seed };
  if (req.negativePrompt) input.negative_prompt = req.negativePrompt;
  if (req.width !== undefined) input.width = req.width;
  if (req.height !== undefined) input.height = req.height;
  if (req.durationSeconds !== undefined && req.mediaType !== "IMAGE")
    input.duration = req.durationSeconds;
  return input;
}

/**
 * Replicate has no progress field; models that use tqdm print `45%|████▌     | 9/20 …`
 * lines (often separated by carriage returns). The last percentage wins.
 */
function progressFromLogs(logs: string | null | undefined): number | undefined {
  if (!logs) return undefined;
  const matches = [...logs.matchAll(/(\d{1,3})%\s*\|/g)];
  const last = matches[matches.length - 1];
  if (!last) return undefined;
  return Math.min(1, Number(last[1]) / 100);
}

/**
 * A prediction's `output` is whatever the model returns: one file URL, a list of them, or an
 * object holding them. Every http(s) or data URL found in it is an output, in order.
 */
function collectOutputs(output: unknown): ProviderOutput[] {
  const found: ProviderOutput[] = [];
  const visit = (value: unknown): void => {
    if (typeof value === "string") {
      const out = toOutput(value);
      if (out) found.push(out);
    } else if (Array.isArray(value)) {
      value.forEach(visit);
    } else if (value && typeof value === "object") {
      Object.values(value).forEach(visit);
    }
  };
  visit(output);
  return found;
}

function toOutput(value: string): ProviderOutput | undefined {
  // Data URLs only come back from sync-mode predictions, which this adapter never asks for,
  // but a Replicate-style server may still answer with one.
  const data = /^data:([\w.+-]+\/[\w.+-]+)?;base64,(.*)$/s.exec(value);
  if (data) return { data: Buffer.from(data[2]!, "base64"), contentType: data[1] };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return undefined;
  return { url: value, contentType: contentTypeForPath(url.pathname) };
}

function refineError(name: string, status: number, body: unknown, headers: Headers): ProviderError {
  const err = errorForStatus(name, status, body, headers);
  const b = (body && typeof body === "object" ? body : {}) as { title?: unknown; detail?: unknown };
  // POST /predictions answers an unknown version with 422 "Invalid version or not permitted".
  if (status === 422 && typeof b.title === "string" && /invalid version/i.test(b.title))
    return new ProviderError(err.message, ProviderErrorCode.ModelNotFound, false);
  if (status === 429 && err.retryAfterMs === undefined) {
    const hint = typeof b.detail === "string" ? /resets in ~?(\d+)\s*s/i.exec(b.detail) : null;
    if (hint) {
      const ms = Math.min(MAX_THROTTLE_HINT_MS, Number(hint[1]) * 1000);
      return new ProviderError(err.message, err.code, err.retryable, ms);
    }
  }
  return err;
}

function jobNotFound(err: unknown, providerJobId: string): unknown {
  // `providerFetch` reads any 404 as an unknown model; here it is an unknown prediction.
  if (err instanceof ProviderError && err.code === ProviderErrorCode.ModelNotFound) {
    return new ProviderError(
      `${err.message} (prediction ${providerJobId.slice(0, 40)})`,
      ProviderErrorCode.JobNotFound,
      false,
    );
  }
  return err;
}

function sameSignature(candidate: string, expected: string): boolean {
  if (!candidate.startsWith("v1,")) return false;
  const a = Buffer.from(candidate);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
