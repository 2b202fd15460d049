/*
 * fal.ai queue API adapter.
 *
 * Sources (read when writing this; re-check them when fal changes):
 * - Queue API: https://docs.fal.ai/model-endpoints/queue and
 *   https://docs.fal.ai/documentation/model-apis/inference/queue — submit `POST /{model_id}[/{subpath}]`;
 *   status, result and cancel live at `/{owner}/{app}/requests/{id}[/status|/cancel]`, and "the
 *   subpath should be used when making the request, but not when getting request status or
 *   results".
 * - Cancel answers: https://fal.ai/docs/inference-api/queue/cancel
 *   (`OK | CANCELLATION_REQUESTED | ALREADY_COMPLETED | NOT_FOUND`).
 * - Webhooks: https://docs.fal.ai/model-endpoints/webhooks and
 *   https://docs.fal.ai/documentation/model-apis/inference/webhooks — `?fal_webhook=<url>`, body
 *   `{request_id, gateway_request_id, status: "OK"|"ERROR", payload, error?, payload_error?}`,
 *   retried 10 times over 2 hours; "Verifying your webhook": Ed25519 over
 *   `request_id \n user_id \n timestamp \n sha256_hex(body)`, keys from a JWKS, cache ≤ 24 h,
 *   timestamp within ±5 min.
 * - Errors: https://docs.fal.ai/errors (model errors: `detail[]` of `{loc, msg, type}`,
 *   `X-Fal-Retryable`) and https://docs.fal.ai/documentation/model-apis/request-errors
 *   (infrastructure errors: `{detail, error_type}` + `X-Fal-Error-Type`).
 * - Official client: fal-ai/fal-js `libs/client/src/queue.ts` and `utils.ts` (`parseEndpointId`:
 *   the app path is `[namespace/]owner/alias`, namespaces `workflows` and `comfy`).
 */
import { createHash, createPublicKey, verify, type JsonWebKey, type KeyObject } from "node:crypto";
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
import { errorForStatus, providerFetch } from "../provider.http";

export interface FalOptions {
  /** fal API key, sent as `Authorization: Key <apiKey>`. */
  apiKey: string;
  /** @defaultValue "https://queue.fal.run" */
  baseUrl?: string;
  /** Where fal publishes its webhook signing keys. @defaultValue "https://rest.alpha.fal.ai/.well-known/jwks.json" */
  jwksUrl?: string;
  /** Deadline of each HTTP call to fal. @defaultValue 30000 */
  timeoutMs?: number;
  /** The adapter's name in the registry and in error messages. @defaultValue "fal" */
  name?: string;
}

const DEFAULTS = {
  baseUrl: "https://queue.fal.run",
  jwksUrl: "https://rest.alpha.fal.ai/.well-known/jwks.json",
  timeoutMs: 30_000,
  name: "fal",
} as const;

/** fal's verification guide: refuse deliveries signed more than 5 minutes either way. */
const WEBHOOK_TOLERANCE_S = 300;
/** fal's verification guide: the JWKS may be cached for up to 24 hours. */
const JWKS_MAX_AGE_MS = 24 * 3600_000;
/**
 * A signature no cached key verifies may mean fal rotated its keys; refetching the JWKS on
 * every such miss would let anyone make us hammer fal with forged calls, so at most this often.
 */
const JWKS_MIN_REFRESH_MS = 5 * 60_000;
/** Path prefixes fal-js treats as a namespace in front of `owner/alias`. */
const ENDPOINT_NAMESPACES = new Set(["workflows", "comfy"]);
/** Separates the request id from the app path in a provider job id (in neither of them). */
const JOB_ID_SEPARATOR = "@";
/** Every status is an answer here: the adapter maps fal's error bodies itself. */
const ANY_STATUS = Array.from({ length: 500 }, (_, i) => 100 + i);

type FalStatus = "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED";

interface FalSubmitResponse {
  request_id?: unknown;
  queue_position?: unknown;
}

interface FalStatusResponse {
  status?: FalStatus | string;
  queue_position?: unknown;
  logs?: Array<{ message?: unknown }> | null;
}

interface FalFile {
  url?: unknown;
  content_type?: unknown;
  width?: unknown;
  height?: unknown;
  duration?: unknown;
}

interface FalWebhookBody {
  request_id?: unknown;
  status?: unknown;
  payload?: unknown;
  error?: unknown;
  payload_error?: unknown;
}

interface FalResponse<T> {
  status: number;
  body: T;
  headers: Headers;
}

/**
 * fal's queue API. Stateless: the provider job id carries what status and cancel need.
 *
 * Job ids: fal's status, result and cancel URLs need the app path (`owner/app`, without the
 * model's subpath) as well as the request id, so `submit` returns
 * `"<request_id>@<owner>/<app>"`. A webhook body names only the request id, so `parseWebhook`
 * returns the bare request id as `providerJobId`: match webhook events to attempts with
 * `FalAdapter.jobKey(attempt.providerJobId) === event.providerJobId`.
 */
export class FalAdapter implements ProviderAdapter {
  readonly name: string;
  readonly supportsWebhooks = true;
  private readonly apiKey: string;
  private readonly baseUrl: string;
  private readonly jwksUrl: string;
  private readonly timeoutMs: number;
  private jwks?: { keys: KeyObject[]; fetchedAt: number };
  private jwksLoading?: Promise<KeyObject[]>;

  constructor(opts: FalOptions) {
    if (!opts.apiKey?.trim())
      throw new Error("fal: an API key is required (create one at https://fal.ai/dashboard/keys)");
    this.apiKey = opts.apiKey;
    this.baseUrl = (opts.baseUrl ?? DEFAULTS.baseUrl).replace(/\/+$/, "");
    this.jwksUrl = opts.jwksUrl ?? DEFAULTS.jwksUrl;
    this.timeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
    this.name = opts.name ?? DEFAULTS.name;
  }

  /**
   * The part of a fal provider job id that webhooks name: the request id. Accepts a full job id
   * (`<request_id>@<owner>/<app>`) or a bare request id.
   */
  static jobKey(providerJobId: string): string {
    const at = providerJobId.indexOf(JOB_ID_SEPARATOR);
    return at === -1 ? providerJobId : providerJobId.slice(0, at);
  }

  /** Webhooks carry only the request id: attempts are matched on it. */
  webhookKey(providerJobId: string): string {
    return FalAdapter.jobKey(providerJobId);
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    const appPath = this.appPath(req.model);
    const url = new URL(`${this.baseUrl}/${req.model}`);
    if (req.webhookUrl) url.searchParams.set("fal_webhook", req.webhookUrl);
    const res = await this.call<FalSubmitResponse>(url.toString(), "POST", "submit", input(req));
    const requestId = res.body?.request_id;
    if (typeof requestId !== "string" || !requestId || requestId.includes(JOB_ID_SEPARATOR)) {
      throw new ProviderError(
        `${this.name}: submit answered without a usable request_id`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    return { providerJobId: `${requestId}${JOB_ID_SEPARATOR}${appPath}` };
  }

  async getStatus(providerJobId: string): Promise<ProviderJobState> {
    const job = this.requestUrl(providerJobId);
    const res = await this.call<FalStatusResponse>(`${job}/status?logs=1`, "GET", "status");
    const body = res.body ?? {};
    switch (body.status) {
      case "IN_QUEUE":
        return {
          status: "queued",
          queuePosition: typeof body.queue_position === "number" ? body.queue_position : undefined,
        };
      case "IN_PROGRESS":
        return { status: "processing", progress: progressFromLogs(body.logs) };
      case "COMPLETED":
        return this.fetchResult(job);
      default:
        throw new ProviderError(
          `${this.name}: unknown queue status ${JSON.stringify(body.status)}`,
          ProviderErrorCode.ProviderError,
          true,
        );
    }
  }

  async cancel(providerJobId: string): Promise<void> {
    const res = await this.call<{ status?: unknown } | null>(
      `${this.requestUrl(providerJobId)}/cancel`,
      "PUT",
      "cancel",
    );
    // fal answers ALREADY_COMPLETED and NOT_FOUND with 4xx statuses; for a best-effort cancel
    // they mean there is nothing left to stop, not that the call failed.
    const answer = res.body?.status;
    if (res.status >= 300 && answer !== "ALREADY_COMPLETED" && answer !== "NOT_FOUND")
      throw this.error(res, "cancel");
  }

  async parseWebhook(req: WebhookRequest, now: Date = new Date()): Promise<WebhookEvent> {
    const requestId = req.headers["x-fal-webhook-request-id"];
    const userId = req.headers["x-fal-webhook-user-id"];
    const timestamp = req.headers["x-fal-webhook-timestamp"];
    const signature = req.headers["x-fal-webhook-signature"];
    if (!requestId || !userId || !timestamp || !signature)
      throw new WebhookVerificationError("fal webhook: missing x-fal-webhook-* headers");
    if (!/^\d{1,12}$/.test(timestamp))
      throw new WebhookVerificationError("fal webhook: malformed timestamp");
    if (Math.abs(now.getTime() / 1000 - Number(timestamp)) > WEBHOOK_TOLERANCE_S)
      throw new WebhookVerificationError("fal webhook: timestamp outside the 300 s tolerance");
    // An Ed25519 signature is 64 bytes.
    if (!/^[0-9a-f]{128}$/i.test(signature))
      throw new WebhookVerificationError("fal webhook: malformed signature");

    const bodyHash = createHash("sha256").update(req.rawBody).digest("hex");
    const message = Buffer.from(`${requestId}\n${userId}\n${timestamp}\n${bodyHash}`);
    const sig = Buffer.from(signature, "hex");
    const signedBy = (keys: KeyObject[]) => keys.some((k) => verify(null, message, k, sig));
    const nowMs = now.getTime();
    if (!signedBy(await this.signingKeys(nowMs))) {
      const age = nowMs - (this.jwks?.fetchedAt ?? nowMs);
      if (age < JWKS_MIN_REFRESH_MS || !signedBy(await this.signingKeys(nowMs, true)))
        throw new WebhookVerificationError("fal webhook: signature does not verify");
    }

    let body: FalWebhookBody;
    try {
      body = JSON.parse(req.rawBody.toString("utf8")) as FalWebhookBody;
    } catch {
      throw new WebhookVerificationError("fal webhook: body is not JSON");
    }
    if (!body || typeof body !== "object" || body.request_id !== requestId)
      throw new WebhookVerificationError("fal webhook: body names another request");
    if (body.status !== "OK" && body.status !== "ERROR")
      throw new WebhookVerificationError("fal webhook: unknown status");

    return {
      // fal sends no delivery id. Each retry is signed afresh (it must be, to pass the 300 s
      // tolerance over fal's 2-hour retry span), so request id + timestamp names one signed
      // message: a replay of it is refused, while fal's own retries are told apart.
      deliveryId: `${requestId}:${timestamp}`,
      providerJobId: requestId,
      state: this.webhookState(body),
    };
  }

  /** The request's base URL, from a job id this adapter returned. */
  private requestUrl(providerJobId: string): string {
    const at = providerJobId.indexOf(JOB_ID_SEPARATOR);
    const requestId = providerJobId.slice(0, at);
    const appPath = providerJobId.slice(at + 1);
    if (at <= 0 || !appPath) {
      throw new ProviderError(
        `${this.name}: ${JSON.stringify(providerJobId.slice(0, 80))} is not a fal job id`,
        ProviderErrorCode.JobNotFound,
        false,
      );
    }
    return `${this.baseUrl}/${appPath}/requests/${encodeURIComponent(requestId)}`;
  }

  /** `owner/app` (or `namespace/owner/app`) of a model id, without the endpoint's subpath. */
  private appPath(model: string): string {
    const parts = model.split("/");
    const size = ENDPOINT_NAMESPACES.has(parts[0] ?? "") ? 3 : 2;
    const app = parts.slice(0, size);
    if (app.length < size || app.some((p) => !p || p === "." || p === "..")) {
      throw new ProviderError(
        `${this.name}: model ${JSON.stringify(model)} is not a fal model id (owner/app[/path])`,
        ProviderErrorCode.ModelNotFound,
        false,
      );
    }
    return app.join("/");
  }

  private async fetchResult(job: string): Promise<ProviderJobState> {
    const res = await this.call<unknown>(job, "GET", "result");
    if (res.status < 300) return outputsState(this.name, res.body);
    const error = this.error(res, "result");
    // These say our call went wrong, not the job: the worker asks again or stops polling.
    const aboutTheCall: string[] = [
      ProviderErrorCode.Auth,
      ProviderErrorCode.RateLimited,
      ProviderErrorCode.JobNotFound,
    ];
    if (aboutTheCall.includes(error.code)) throw error;
    if (falErrorType(res.body, res.headers) === "client_cancelled") return { status: "canceled" };
    return { status: "failed", error };
  }

  private webhookState(body: FalWebhookBody): ProviderJobState {
    if (body.status === "OK") {
      // fal could not serialize the result into the webhook: it is still there to fetch.
      if (body.payload === null || body.payload === undefined)
        return { status: "processing", progress: 1, pollAfterMs: 0 };
      return outputsState(this.name, body.payload);
    }
    // fal reports the model's HTTP status only inside the text ("Invalid status code: 422");
    // without one the failure is taken for a server error.
    const text = typeof body.error === "string" ? body.error : "";
    const reported = /status code:?\s*(\d{3})/i.exec(text);
    const status = reported ? Number(reported[1]) : 500;
    const mapped = this.error({ status, body: body.payload, headers: new Headers() }, "result");
    const error = new ProviderError(
      `${mapped.message}${text ? ` [${text.slice(0, 200)}]` : ""}`,
      mapped.code,
      mapped.retryable,
    );
    return { status: "failed", error };
  }

  /** One call to fal: `providerFetch` for transport and deadline, fal's error bodies mapped here. */
  private async call<T>(
    url: string,
    method: "GET" | "POST" | "PUT",
    what: CallKind,
    json?: unknown,
  ): Promise<FalResponse<T>> {
    const res = await providerFetch<T>(this.name, url, {
      method,
      json,
      headers: { authorization: `Key ${this.apiKey}` },
      timeoutMs: this.timeoutMs,
      okStatuses: ANY_STATUS,
    });
    // Cancel and result decide for themselves what an error status means.
    if (res.status >= 300 && what !== "cancel" && what !== "result") throw this.error(res, what);
    return res;
  }

  /** The shared status mapping, refined with what fal's error bodies and headers say. */
  private error(res: FalResponse<unknown>, what: CallKind): ProviderError {
    const base = errorForStatus(this.name, res.status, res.body, res.headers);
    const errorType = falErrorType(res.body, res.headers);
    const details = modelErrors(res.body);
    const detail = details.length
      ? `: ${details.map((d) => (d.field ? `${d.field}: ${d.msg}` : d.msg)).join("; ")}`
      : "";
    const message = `${details.length ? `${this.name}: HTTP ${res.status}${detail}` : base.message}${errorType ? ` (${errorType})` : ""}`;
    let code = base.code;
    let retryable = base.retryable;
    if (details.some((d) => d.type === "content_policy_violation")) {
      code = ProviderErrorCode.ContentRefused;
      retryable = false;
    } else if (res.status === 404 && what !== "submit") {
      // After submit the model is known to exist: a 404 names the request.
      code = ProviderErrorCode.JobNotFound;
    } else if (errorType === "request_timeout" || errorType === "startup_timeout") {
      code = ProviderErrorCode.Timeout;
    }
    // fal's model errors may say outright whether the same request could succeed again.
    const falRetryable = res.headers.get("x-fal-retryable");
    if (res.status >= 500 && (falRetryable === "true" || falRetryable === "false"))
      retryable = falRetryable === "true";
    return new ProviderError(message, code, retryable, base.retryAfterMs);
  }

  /** fal's signing keys, from the cache while it is younger than 24 hours. */
  private async signingKeys(nowMs: number, refresh = false): Promise<KeyObject[]> {
    if (!refresh && this.jwks && nowMs - this.jwks.fetchedAt < JWKS_MAX_AGE_MS)
      return this.jwks.keys;
    // Concurrent webhooks share one fetch.
    this.jwksLoading ??= this.loadJwks(nowMs).finally(() => (this.jwksLoading = undefined));
    return this.jwksLoading;
  }

  private async loadJwks(nowMs: number): Promise<KeyObject[]> {
    // No Authorization header: the key set is public and our API key stays with the queue API.
    const res = await providerFetch<{ keys?: unknown }>(this.name, this.jwksUrl, {
      timeoutMs: this.timeoutMs,
      okStatuses: ANY_STATUS,
    });
    // Whatever went wrong is on fal's side (or the network's), never the sender's: the caller
    // answers so that fal delivers again later.
    if (res.status >= 300) {
      throw new ProviderError(
        `${this.name}: fetching the webhook keys from ${this.jwksUrl} answered HTTP ${res.status}`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    const keys: KeyObject[] = [];
    for (const jwk of Array.isArray(res.body?.keys) ? res.body.keys : []) {
      const k = jwk as JsonWebKey;
      if (k?.kty !== "OKP" || k.crv !== "Ed25519" || typeof k.x !== "string") continue;
      try {
        keys.push(createPublicKey({ key: { kty: k.kty, crv: k.crv, x: k.x }, format: "jwk" }));
      } catch {
        // A key this Node cannot read cannot have signed anything we accept.
      }
    }
    if (!keys.length) {
      throw new ProviderError(
        `${this.name}: the JWKS at ${this.jwksUrl} holds no Ed25519 key`,
        ProviderErrorCode.ProviderError,
        true,
      );
    }
    this.jwks = { keys, fetchedAt: nowMs };
    return keys;
  }
}

type CallKind = "submit" | "status" | "result" | "cancel";

/** The model input gengate sends: the fields fal's text-to-image/video/audio models share. */
function input(req: ProviderRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { prompt: req.prompt, seed: req.seed };
  if (req.negativePrompt) body.negative_prompt = req.negativePrompt;
  if (req.width !== undefined && req.height !== undefined)
    body.image_size = { width: req.width, height: req.height };
  if (req.mediaType !== "IMAGE" && req.durationSeconds !== undefined)
    body.duration = req.durationSeconds;
  return body;
}

/** Models print progress in their logs (tqdm bars, "step 10/20 (50%)"): the latest one wins. */
function progressFromLogs(logs: FalStatusResponse["logs"]): number | undefined {
  if (!Array.isArray(logs)) return undefined;
  for (let i = logs.length - 1; i >= 0; i--) {
    const percents = String(logs[i]?.message ?? "").match(/\d{1,3}(?:\.\d+)?(?=\s?%)/g);
    if (percents) return Math.min(1, Math.max(0, Number(percents[percents.length - 1]) / 100));
  }
  return undefined;
}

/**
 * A model result as outputs: `images[]` (or `image`), `video`, `audio` / `audio_file`. Images a
 * model's safety checker flagged (`has_nsfw_concepts`) come back blanked, so they are dropped;
 * when nothing is left the job was refused.
 */
function outputsState(provider: string, result: unknown): ProviderJobState {
  const r = (result ?? {}) as Record<string, unknown>;
  const flagged = Array.isArray(r.has_nsfw_concepts) ? r.has_nsfw_concepts : [];
  const images = Array.isArray(r.images) ? r.images : r.image ? [r.image] : [];
  const outputs = [
    ...images.filter((_, i) => flagged[i] !== true).map((f) => toOutput(f)),
    toOutput(r.video),
    toOutput(r.audio),
    toOutput(r.audio_file),
  ].filter((o): o is ProviderOutput => o !== undefined);
  if (outputs.length) return { status: "succeeded", outputs };
  if (flagged.includes(true)) {
    return {
      status: "failed",
      error: new ProviderError(
        `${provider}: the model's safety checker flagged every output`,
        ProviderErrorCode.ContentRefused,
        false,
      ),
    };
  }
  return {
    status: "failed",
    error: new ProviderError(
      `${provider}: the result holds no image, video or audio file`,
      ProviderErrorCode.ProviderError,
      true,
    ),
  };
}

function toOutput(file: unknown): ProviderOutput | undefined {
  if (!file || typeof file !== "object") return undefined;
  const f = file as FalFile;
  if (typeof f.url !== "string" || !f.url) return undefined;
  const out: ProviderOutput = { url: f.url };
  if (typeof f.content_type === "string") out.contentType = f.content_type;
  if (typeof f.width === "number") out.width = f.width;
  if (typeof f.height === "number") out.height = f.height;
  if (typeof f.duration === "number") out.durationSeconds = f.duration;
  return out;
}

/** fal's infrastructure error category (`request_timeout`, `runner_scheduling_failure`, ...). */
function falErrorType(body: unknown, headers: Headers): string | undefined {
  const fromBody = (body as { error_type?: unknown } | null)?.error_type;
  return headers.get("x-fal-error-type") ?? (typeof fromBody === "string" ? fromBody : undefined);
}

/** fal's model errors: `{detail: [{loc, msg, type}]}`, the field without the leading "body". */
function modelErrors(body: unknown): Array<{ field: string; msg: string; type: string }> {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (!Array.isArray(detail)) return [];
  return detail
    .filter((d): d is Record<string, unknown> => !!d && typeof d === "object")
    .map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc.map(String) : [];
      return {
        field: (loc[0] === "body" ? loc.slice(1) : loc).join("."),
        msg: typeof d.msg === "string" ? d.msg : "invalid input",
        type: typeof d.type === "string" ? d.type : "",
      };
    });
}
