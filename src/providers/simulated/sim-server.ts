/**
 * The simulated provider served as its own HTTP server (`gengate sim-provider`). It speaks
 * Replicate's predictions API, so gengate reaches it through the Replicate adapter exactly as it
 * would reach Replicate, webhooks and all; demos, tests and load tests point at it instead of
 * paying for GPUs.
 *
 * Replicate behaviour imitated here, as Replicate documents it:
 * - `POST /v1/models/{owner}/{name}/predictions` and `POST /v1/predictions` (`version` is
 *   `owner/name`, `owner/name:id` or the bare 64-hex id), `GET /v1/predictions[/{id}]`,
 *   `POST /v1/predictions/{id}/cancel`, `GET /v1/webhooks/default/secret`, `Prefer: wait[=N]`.
 * - Error bodies: 401 `{title: "Unauthenticated", …}`, 404 `{detail: "The requested resource
 *   could not be found.", status}`, 422 `Input validation failed` with `invalid_fields`,
 *   422 `Invalid version or not permitted`, 429 `{detail: "Request was throttled. …"}`.
 * - Statuses `starting → processing → succeeded | failed | canceled`; progress only as tqdm
 *   lines in the cumulative `logs`; outputs are file URLs (served here, without auth, as
 *   replicate.delivery serves them).
 * - Webhooks: the body is the prediction; events `start`, `output`, `logs`, `completed` chosen
 *   by `webhook_events_filter` (all four when it is absent); `output` and `logs` at most once
 *   per 500 ms; signed per Standard Webhooks; retried with backoff.
 *
 * Beyond Replicate (which has none), a batch API modelled on OpenAI's Batch, at half the price:
 * `POST /v1/batches {model, items: [{custom_id, input}]}` (an `Idempotency-Key` header makes a
 * repeated create answer the batch it created first), `GET /v1/batches[/{id}]` with
 * `status` (`in_progress`, `completed`) and `request_counts`, and `GET /v1/batches/{id}/results`,
 * one result per custom id. Each item runs exactly as the same prediction would on its own.
 *
 * Deliberately left out: deployments, trainings, `Cancel-After`, streaming, pagination of the
 * list, and persistence. Predictions live in this process's memory (a restart forgets them)
 * and are dropped an hour after they finish, as Replicate drops inputs and outputs.
 *
 * A prediction's whole course is fixed when it is created (see `buildTimeline`): every answer
 * about it is a pure function of the time elapsed since, so a GET, a webhook and a
 * `Prefer: wait` answer always agree.
 */
import { simPlan, type SimPlan } from "./sim-plan";
import { createHash, randomBytes, randomInt, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { z } from "zod";
import type { MediaType } from "../../entities";
import { renderSimulated } from "./sim-defects";
import type { RenderedMedia } from "./sim-render";

// ---------------------------------------------------------------------------------------------
// Public API

/** How the API answers while the simulator runs. */
export type SimMode = "normal" | "down" | "rate-limited" | "flaky" | "hang";

/**
 * What the simulated provider does, switchable at runtime (`setBehaviour`, or
 * `POST /admin/behaviour`). Latency, failure and progress settings apply to predictions created
 * afterwards; the mode applies to the next request.
 */
export interface SimBehaviour {
  /**
   * `normal`; `down`: every API request answers 503; `rate-limited`: 429 with `Retry-After`;
   * `flaky`: a share (`flakyRate`) of API requests answer 500; `hang`: requests are accepted
   * and never answered. `/healthz` and `/admin/*` are never affected, so a test can always
   * switch back.
   * @defaultValue "normal"
   */
  mode: SimMode;
  /** Median time from creation to the final status, in ms. @defaultValue 3000 */
  latencyMs: number;
  /** Spread of the latency as a fraction of the median, drawn per prompt and seed. @defaultValue 0.3 */
  latencyJitter: number;
  /** Share of predictions that fail, drawn per prompt and seed. @defaultValue 0 */
  failureRate: number;
  /** Number of progress lines (`k/N`) a prediction logs before its result. @defaultValue 5 */
  progressSteps: number;
  /** `Retry-After` of the 429s in `rate-limited` mode, in seconds. @defaultValue 30 */
  retryAfterSeconds: number;
  /** Share of API requests answered with 500 in `flaky` mode. @defaultValue 0.5 */
  flakyRate: number;
  /**
   * Whether the bad-output directives (`[sim:black]`, `[sim:truncated]`, … see
   * `sim-defects.ts`) are obeyed; off, this server renders every prompt well, which makes it
   * the good provider behind a bad one. @defaultValue true
   */
  defects: boolean;
}

export interface SimServerOptions {
  /** 0 picks a free port (see `SimServer.port`). */
  port: number;
  /** @defaultValue "127.0.0.1" */
  host?: string;
  /** The bearer token every API and admin request must carry. */
  apiToken: string;
  /** Standard Webhooks signing secret, `whsec_` followed by base64. */
  webhookSecret: string;
  /**
   * Base of the URLs put in predictions (`urls.get`, outputs): what the clients (and whoever
   * downloads outputs) reach this server at. @defaultValue `SimServer.url`
   */
  publicUrl?: string;
  /** @defaultValue 3000 */
  latencyMs?: number;
  /** @defaultValue 0.3 */
  latencyJitter?: number;
  /** @defaultValue 0 */
  failureRate?: number;
  /** @defaultValue 5 */
  progressSteps?: number;
  /** @defaultValue "normal" */
  mode?: SimMode;
  /** @defaultValue 30 */
  retryAfterSeconds?: number;
  /** @defaultValue 0.5 */
  flakyRate?: number;
  /** @defaultValue true */
  defects?: boolean;
  /**
   * Least time between two `logs` / `output` webhooks of one prediction (Replicate's 500 ms).
   * Tests set 0 to see every step. @defaultValue 500
   */
  webhookThrottleMs?: number;
  /**
   * First delay before a failed webhook delivery is tried again; doubles per attempt.
   * @defaultValue 1000
   */
  webhookRetryBaseMs?: number;
  /** @defaultValue silent */
  logger?: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

export interface SimServer {
  /** Where the server listens, e.g. `http://127.0.0.1:40123` (the API is under `/v1`). */
  url: string;
  port: number;
  /** Throws a RangeError naming the field when a value is out of range. */
  setBehaviour(b: Partial<SimBehaviour>): void;
  behaviour(): SimBehaviour;
  /** Stops listening, drops open connections (hung ones included) and every timer. */
  close(): Promise<void>;
}

/** The models this server runs; the media type follows from the name. */
export const SIM_MODELS = {
  "sim/image": { mediaType: "IMAGE", extension: "png" },
  "sim/video": { mediaType: "VIDEO", extension: "apng" },
  "sim/audio": { mediaType: "AUDIO", extension: "wav" },
} as const satisfies Record<string, { mediaType: MediaType; extension: string }>;

export type SimModelName = keyof typeof SIM_MODELS;

/** A model's one version id (64 hex, like Replicate's), stable across runs and machines. */
export function simModelVersion(model: SimModelName): string {
  return createHash("sha256").update(`gengate-sim:${model}:v1`).digest("hex");
}

// ---------------------------------------------------------------------------------------------
// Defaults and limits

const DEFAULT_BEHAVIOUR: SimBehaviour = {
  mode: "normal",
  latencyMs: 3000,
  latencyJitter: 0.3,
  failureRate: 0,
  progressSteps: 5,
  retryAfterSeconds: 30,
  flakyRate: 0.5,
  defects: true,
};

const DEFAULTS = {
  host: "127.0.0.1",
  webhookThrottleMs: 500,
  webhookRetryBaseMs: 1000,
} as const;

const MODES = ["normal", "down", "rate-limited", "flaky", "hang"] as const;

const behaviourSchema = z
  .object({
    mode: z.enum(MODES),
    latencyMs: z.number().int().min(0).max(3_600_000),
    latencyJitter: z.number().min(0).max(1),
    failureRate: z.number().min(0).max(1),
    progressSteps: z.number().int().min(1).max(100),
    retryAfterSeconds: z.number().int().min(0).max(86_400),
    flakyRate: z.number().min(0).max(1),
    defects: z.boolean(),
  })
  .strict();

const partialBehaviourSchema = behaviourSchema.partial();

/** Attempts per webhook delivery, the first included (Replicate: "retried a few times"). */
const WEBHOOK_MAX_ATTEMPTS = 4;
/** Replicate asks receivers to answer "within a few seconds"; Standard Webhooks allows 15–30 s. */
const WEBHOOK_TIMEOUT_MS = 10_000;
/** A receiver's `Retry-After` is honoured up to this, so a typo cannot park a delivery for hours. */
const MAX_WEBHOOK_RETRY_AFTER_MS = 60_000;
/** Replicate deletes inputs and outputs an hour after a prediction finishes. */
const RETENTION_MS = 60 * 60 * 1000;
const SWEEP_INTERVAL_MS = 60 * 1000;
/** Rendering is deterministic, so the cache only spares CPU for repeated downloads. */
const MAX_CACHED_FILES = 32;
const MAX_BODY_BYTES = 1024 * 1024;
/** Replicate holds a `Prefer: wait` request for at most 60 s. */
const MAX_PREFER_WAIT_SECONDS = 60;
const MAX_DIMENSION = 4096;
const MAX_DURATION_SECONDS = 600;
const DEFAULT_SIZE = 512;
const DEFAULT_VIDEO_SECONDS = 2;
const DEFAULT_AUDIO_SECONDS = 5;

/** Replicate's safety-checker failure, which clients recognise as a content refusal. */
const SENSITIVE_ERROR =
  "The input or output was flagged as sensitive. Please try again with different inputs. (E005)";
const SIMULATED_ERROR = "simulated provider failure";

const WEBHOOK_EVENTS = ["start", "output", "logs", "completed"] as const;
type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

// ---------------------------------------------------------------------------------------------
// Predictions

type PredictionStatus = "starting" | "processing" | "succeeded" | "failed" | "canceled";

/** Replicate's prediction object, as this server sends it. */
interface PredictionJson {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
  output: string[] | null;
  error: string | null;
  logs: string;
  status: PredictionStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  data_removed: boolean;
  urls: { get: string; cancel: string };
  metrics: { predict_time?: number; total_time?: number };
}

/** A prediction's course, in ms after its creation. */
interface Timeline {
  /** `starting` → `processing`. */
  startMs: number;
  /** The final status. */
  endMs: number;
  outcome: "succeeded" | "failed";
  error: string | null;
  /** Log lines in time order; the logs at a time are the lines whose `at` has passed. */
  lines: { at: number; text: string }[];
}

interface Delivery {
  /** `webhook-id`: one per event, the same on every retry of it. */
  id: string;
  event: WebhookEventType;
  body: string;
}

interface SimPrediction {
  id: string;
  model: SimModelName;
  input: Record<string, unknown>;
  prompt: string;
  seed: number;
  width?: number;
  height?: number;
  durationSeconds?: number;
  createdAt: number;
  /** The behaviour's `defects` when it was created. */
  defects: boolean;
  timeline: Timeline;
  /** Absolute time of the cancel, when it came before the end. */
  canceledAt: number | null;
  webhook: string | null;
  events: ReadonlySet<WebhookEventType>;
  /** Timers of this prediction's future (webhook events), dropped on cancel. */
  timers: Set<NodeJS.Timeout>;
  /** Event time of the last `logs`/`output` webhook sent, for the throttle. */
  lastIntermediateAt: number | null;
  trailingScheduled: boolean;
  queue: Delivery[];
  pumping: boolean;
  /** `Prefer: wait` requests to wake when the prediction is canceled. */
  waiters: Set<() => void>;
}

/** A batch: its items are predictions of their own, created together, without webhooks. */
interface SimBatch {
  id: string;
  model: SimModelName;
  createdAt: number;
  idempotencyKey: string | null;
  items: { customId: string; predictionId: string }[];
}

const MAX_BATCH_ITEMS = 1000;

/**
 * Lays out a prediction's course: a `starting` slice (cold boot), then one slice per progress
 * step, each logging a tqdm line, then the result. A failing plan ends at `failAt` of the
 * latency; a rejected one fails as soon as it starts, as a safety checker does.
 */
function buildTimeline(plan: SimPlan, steps: number, seed: number): Timeline {
  // At least 1 ms of `starting`, so a create answer is always `starting`, as Replicate's is.
  const startMs = Math.max(1, Math.round(plan.latencyMs / (steps + 1)));
  const seedLine = { at: startMs, text: `Using seed: ${seed}` };
  if (plan.rejected) {
    return {
      startMs,
      endMs: startMs,
      outcome: "failed",
      error: SENSITIVE_ERROR,
      lines: [seedLine, { at: startMs, text: `Error: ${SENSITIVE_ERROR}` }],
    };
  }
  const runEnd = Math.max(startMs, plan.latencyMs);
  const endMs =
    plan.failAt === null ? runEnd : Math.max(startMs, Math.round(plan.latencyMs * plan.failAt));
  const stepMs = (runEnd - startMs) / steps;
  const lines = [seedLine];
  for (let k = 0; k < steps; k++) {
    const at = Math.round(startMs + k * stepMs);
    if (plan.failAt === null || at < endMs) lines.push({ at, text: progressLine(k, steps) });
  }
  if (plan.failAt === null) {
    lines.push({ at: endMs, text: progressLine(steps, steps) });
    return { startMs, endMs, outcome: "succeeded", error: null, lines };
  }
  lines.push({ at: endMs, text: `Error: ${SIMULATED_ERROR}` });
  return { startMs, endMs, outcome: "failed", error: SIMULATED_ERROR, lines };
}

/** A tqdm-style progress line, e.g. ` 40%|████      | 2/5`. */
function progressLine(done: number, total: number): string {
  const percent = Math.floor((done / total) * 100);
  const filled = Math.floor(percent / 10);
  return `${String(percent).padStart(3)}%|${"█".repeat(filled)}${" ".repeat(10 - filled)}| ${done}/${total}`;
}

function settledAt(p: SimPrediction): number {
  return p.canceledAt ?? p.createdAt + p.timeline.endMs;
}

function statusAt(p: SimPrediction, at: number): PredictionStatus {
  if (p.canceledAt !== null && at >= p.canceledAt) return "canceled";
  const elapsed = at - p.createdAt;
  if (elapsed >= p.timeline.endMs) return p.timeline.outcome;
  return elapsed >= p.timeline.startMs ? "processing" : "starting";
}

function isTerminal(status: PredictionStatus): boolean {
  return status === "succeeded" || status === "failed" || status === "canceled";
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function newPredictionId(): string {
  // Replicate's ids: 26 lowercase letters and digits.
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (const byte of randomBytes(26)) id += alphabet[byte % alphabet.length];
  return id;
}

// ---------------------------------------------------------------------------------------------
// Request validation

interface InvalidField {
  type: string;
  field: string;
  description: string;
}

interface CreateRequest {
  model: SimModelName;
  input: Record<string, unknown>;
  prompt: string;
  seed?: number;
  width?: number;
  height?: number;
  durationSeconds?: number;
  webhook: string | null;
  events: ReadonlySet<WebhookEventType>;
}

type CreateParse =
  | { ok: true; request: CreateRequest }
  | { ok: false; status: number; body: Record<string, unknown> };

const BODY_KEYS = new Set(["input", "webhook", "webhook_events_filter", "webhook_completed"]);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isSimModel(name: string): name is SimModelName {
  return Object.prototype.hasOwnProperty.call(SIM_MODELS, name);
}

/** `owner/name`, `owner/name:id` or the bare id, as `POST /v1/predictions` takes them. */
function modelForVersion(version: string): SimModelName | undefined {
  const [name, id] = version.includes("/") ? version.split(":", 2) : [undefined, version];
  if (name !== undefined) {
    if (!isSimModel(name)) return undefined;
    return id === undefined || id === simModelVersion(name) ? name : undefined;
  }
  return (Object.keys(SIM_MODELS) as SimModelName[]).find((m) => simModelVersion(m) === id);
}

function invalid(fields: InvalidField[]): CreateParse {
  const detail = fields
    .map((f) => (f.field ? `- ${f.field}: ${f.description}\n` : `- ${f.description}\n`))
    .join("");
  return {
    ok: false,
    status: 422,
    body: { detail, status: 422, title: "Input validation failed", invalid_fields: fields },
  };
}

/**
 * Validates a create body the way Replicate does: unknown top-level properties and bad
 * inputs are 422 `Input validation failed` listing every problem; an unknown version is 422
 * `Invalid version or not permitted`. `routeModel` is set on the models route.
 */
function parseCreate(body: unknown, routeModel: SimModelName | undefined): CreateParse {
  if (!isObject(body)) {
    return invalid([{ type: "type", field: "", description: "Invalid type. Expected: object" }]);
  }
  const issues: InvalidField[] = [];
  for (const key of Object.keys(body)) {
    if (!BODY_KEYS.has(key) && !(key === "version" && !routeModel)) {
      issues.push({
        type: "additional_property_not_allowed",
        field: "",
        description: `Additional property ${key} is not allowed`,
      });
    }
  }

  let model = routeModel;
  if (!routeModel) {
    if (typeof body.version !== "string" || !body.version) {
      issues.push({ type: "required", field: "", description: "version is required" });
    } else {
      model = modelForVersion(body.version);
      if (!model) {
        return {
          ok: false,
          status: 422,
          body: {
            title: "Invalid version or not permitted",
            detail:
              "The specified version does not exist (or perhaps you don't have permission to use it?)",
            status: 422,
          },
        };
      }
    }
  }

  const input = body.input;
  let prompt = "";
  const numbers: Partial<Record<"seed" | "width" | "height" | "duration", number>> = {};
  if (!isObject(input)) {
    issues.push({ type: "required", field: "", description: "input is required" });
  } else {
    if (input.prompt === undefined) {
      issues.push({ type: "required", field: "input", description: "prompt is required" });
    } else if (typeof input.prompt !== "string") {
      issues.push({
        type: "invalid_type",
        field: "input.prompt",
        description: "Invalid type. Expected: string",
      });
    } else if (input.prompt.trim() === "") {
      issues.push({
        type: "string_gte",
        field: "input.prompt",
        description: "String length must be greater than or equal to 1",
      });
    } else {
      prompt = input.prompt;
    }
    if (input.negative_prompt !== undefined && typeof input.negative_prompt !== "string") {
      issues.push({
        type: "invalid_type",
        field: "input.negative_prompt",
        description: "Invalid type. Expected: string",
      });
    }
    const ranges = {
      seed: { min: -(2 ** 53), max: 2 ** 53, integer: true },
      width: { min: 1, max: MAX_DIMENSION, integer: true },
      height: { min: 1, max: MAX_DIMENSION, integer: true },
      duration: { min: 0.1, max: MAX_DURATION_SECONDS, integer: false },
    } as const;
    for (const [name, range] of Object.entries(ranges) as [
      keyof typeof ranges,
      (typeof ranges)[keyof typeof ranges],
    ][]) {
      const value = input[name];
      if (value === undefined || value === null) continue;
      const field = `input.${name}`;
      if (typeof value !== "number" || !Number.isFinite(value)) {
        issues.push({ type: "invalid_type", field, description: "Invalid type. Expected: number" });
      } else if (range.integer && !Number.isInteger(value)) {
        issues.push({
          type: "invalid_type",
          field,
          description: "Invalid type. Expected: integer",
        });
      } else if (value < range.min) {
        issues.push({
          type: "number_gte",
          field,
          description: `Must be greater than or equal to ${range.min}`,
        });
      } else if (value > range.max) {
        issues.push({
          type: "number_lte",
          field,
          description: `Must be less than or equal to ${range.max}`,
        });
      } else {
        numbers[name] = value;
      }
    }
  }

  let webhook: string | null = null;
  let events: ReadonlySet<WebhookEventType> = new Set(WEBHOOK_EVENTS);
  const hook = body.webhook ?? body.webhook_completed;
  if (hook !== undefined && hook !== null) {
    if (typeof hook !== "string" || !isHttpUrl(hook)) {
      issues.push({ type: "format", field: "webhook", description: "Does not match format 'uri'" });
    } else {
      webhook = hook;
      // The legacy `webhook_completed` asks for the final call only.
      if (body.webhook === undefined || body.webhook === null) events = new Set(["completed"]);
    }
  }
  const filter = body.webhook_events_filter;
  if (filter !== undefined && filter !== null) {
    const allowed: readonly string[] = WEBHOOK_EVENTS;
    if (!Array.isArray(filter) || filter.some((e) => !allowed.includes(e as string))) {
      issues.push({
        type: "enum",
        field: "webhook_events_filter",
        description: `webhook_events_filter must be a list of: ${WEBHOOK_EVENTS.map((e) => `"${e}"`).join(", ")}`,
      });
    } else {
      events = new Set(filter as WebhookEventType[]);
    }
  }

  if (issues.length > 0 || !model || !isObject(input)) return invalid(issues);
  return {
    ok: true,
    request: {
      model,
      input,
      prompt,
      seed: numbers.seed,
      width: numbers.width,
      height: numbers.height,
      durationSeconds: numbers.duration,
      webhook,
      events,
    },
  };
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    // Replicate insists on HTTPS; a simulator on a laptop or in CI calls plain http receivers.
    return url.protocol === "http:" || url.protocol === "https:";
  } catch {
    return false;
  }
}

function validateOptions(opts: SimServerOptions): void {
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new RangeError(`sim-provider: port must be an integer 0..65535, got ${opts.port}`);
  }
  if (!opts.apiToken) throw new RangeError("sim-provider: an API token is required");
  if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(opts.webhookSecret ?? "")) {
    throw new RangeError(
      "sim-provider: the webhook secret must be whsec_ followed by base64 (e.g. whsec_ + 24 random bytes in base64)",
    );
  }
  if (opts.publicUrl !== undefined && !isHttpUrl(opts.publicUrl)) {
    throw new RangeError(`sim-provider: publicUrl must be an http(s) URL, got "${opts.publicUrl}"`);
  }
  for (const [name, value] of [
    ["webhookThrottleMs", opts.webhookThrottleMs],
    ["webhookRetryBaseMs", opts.webhookRetryBaseMs],
  ] as const) {
    if (value !== undefined && (!Number.isFinite(value) || value < 0)) {
      throw new RangeError(`sim-provider: ${name} must be a number >= 0, got ${value}`);
    }
  }
}

function checkBehaviour(b: unknown, schema: z.ZodTypeAny): void {
  const parsed = schema.safeParse(b);
  if (!parsed.success) {
    const reasons = parsed.error.issues.map(
      (i) => `${i.path.join(".") || "behaviour"}: ${i.message}`,
    );
    throw new RangeError(`invalid behaviour (${reasons.join("; ")})`);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

class BodyError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = "BodyError";
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const NOT_FOUND = { detail: "The requested resource could not be found.", status: 404 };

function notFound(res: ServerResponse): void {
  sendJson(res, 404, NOT_FOUND);
}

function methodNotAllowed(res: ServerResponse, method: string | undefined): void {
  sendJson(res, 405, { detail: `Method "${method ?? ""}" not allowed.`, status: 405 });
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyError("request body is larger than 1 MiB", 413);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (!text.trim()) return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new BodyError("request body is not valid JSON", 400);
  }
}

/** Seconds of `Prefer: wait[=N]`, or undefined when the client did not ask to wait. */
function preferWaitSeconds(req: IncomingMessage): number | undefined {
  const prefer = req.headers.prefer;
  const header = Array.isArray(prefer) ? prefer.join(",") : (prefer ?? "");
  const match = /(?:^|[\s,;])wait(?:=(\d+))?(?:$|[\s,;])/i.exec(header);
  if (!match) return undefined;
  const asked = match[1] === undefined ? MAX_PREFER_WAIT_SECONDS : Number(match[1]);
  return Math.min(MAX_PREFER_WAIT_SECONDS, Math.max(1, asked));
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) ? Math.min(MAX_WEBHOOK_RETRY_AFTER_MS, Math.max(0, ms)) : undefined;
}

function digestOf(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

function render(p: SimPrediction): RenderedMedia {
  const mediaType = SIM_MODELS[p.model].mediaType;
  return renderSimulated({
    defects: p.defects,
    mediaType,
    prompt: p.prompt,
    seed: p.seed,
    width: p.width ?? DEFAULT_SIZE,
    height: p.height ?? DEFAULT_SIZE,
    durationSeconds:
      p.durationSeconds ?? (mediaType === "AUDIO" ? DEFAULT_AUDIO_SECONDS : DEFAULT_VIDEO_SECONDS),
  });
}

// ---------------------------------------------------------------------------------------------
// The server

/**
 * Starts the simulated provider. Rejects with a sentence when an option is invalid or the port
 * cannot be bound.
 */
export async function startSimServer(opts: SimServerOptions): Promise<SimServer> {
  validateOptions(opts);
  const initial: SimBehaviour = {
    mode: opts.mode ?? DEFAULT_BEHAVIOUR.mode,
    latencyMs: opts.latencyMs ?? DEFAULT_BEHAVIOUR.latencyMs,
    latencyJitter: opts.latencyJitter ?? DEFAULT_BEHAVIOUR.latencyJitter,
    failureRate: opts.failureRate ?? DEFAULT_BEHAVIOUR.failureRate,
    progressSteps: opts.progressSteps ?? DEFAULT_BEHAVIOUR.progressSteps,
    retryAfterSeconds: opts.retryAfterSeconds ?? DEFAULT_BEHAVIOUR.retryAfterSeconds,
    flakyRate: opts.flakyRate ?? DEFAULT_BEHAVIOUR.flakyRate,
    defects: opts.defects ?? DEFAULT_BEHAVIOUR.defects,
  };
  checkBehaviour(initial, behaviourSchema);
  const sim = new SimProvider(opts, initial);
  await sim.listen(opts.port, opts.host ?? DEFAULTS.host);
  return {
    url: sim.url,
    port: sim.port,
    setBehaviour: (b) => sim.setBehaviour(b),
    behaviour: () => ({ ...sim.currentBehaviour }),
    close: () => sim.close(),
  };
}

class SimProvider {
  url = "";
  port = 0;
  currentBehaviour: SimBehaviour;
  private publicUrl = "";
  private readonly server: Server;
  private readonly predictions = new Map<string, SimPrediction>();
  private readonly batches = new Map<string, SimBatch>();
  private readonly batchesByKey = new Map<string, string>();
  private readonly files = new Map<string, RenderedMedia>();
  private readonly signer: Webhook;
  private readonly tokenDigest: Buffer;
  private readonly throttleMs: number;
  private readonly retryBaseMs: number;
  private readonly log: NonNullable<SimServerOptions["logger"]>;
  /** Every pending timer, so `close` leaves none behind. */
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Resolvers of pending sleeps, released on `close`. */
  private readonly sleepers = new Set<() => void>();
  private readonly pumps = new Set<Promise<void>>();
  private readonly shutdown = new AbortController();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly opts: SimServerOptions,
    initial: SimBehaviour,
  ) {
    this.currentBehaviour = initial;
    this.signer = new Webhook(opts.webhookSecret);
    this.tokenDigest = digestOf(opts.apiToken);
    this.throttleMs = opts.webhookThrottleMs ?? DEFAULTS.webhookThrottleMs;
    this.retryBaseMs = opts.webhookRetryBaseMs ?? DEFAULTS.webhookRetryBaseMs;
    this.log = opts.logger ?? { info: () => undefined, warn: () => undefined };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, err));
    });
  }

  async listen(port: number, host: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`sim-provider: cannot listen on ${host}:${port} (${err.message})`));
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
    const reachable = host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host;
    this.url = `http://${reachable.includes(":") ? `[${reachable}]` : reachable}:${this.port}`;
    this.publicUrl = (this.opts.publicUrl ?? this.url).replace(/\/+$/, "");
    this.sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  setBehaviour(b: Partial<SimBehaviour>): void {
    checkBehaviour(b, partialBehaviourSchema);
    this.currentBehaviour = { ...this.currentBehaviour, ...b };
    this.log.info({ behaviour: this.currentBehaviour }, "sim-provider behaviour changed");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.shutdown.abort();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const wake of this.sleepers) wake();
    this.sleepers.clear();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Hung requests (mode "hang") and idle keep-alive sockets would hold close() forever.
    this.server.closeAllConnections();
    await Promise.allSettled([...this.pumps]);
    await closed;
  }

  // --- routing ---------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://sim.invalid").pathname;
    const method = req.method ?? "GET";

    if (path === "/healthz") {
      if (method !== "GET" && method !== "HEAD") return methodNotAllowed(res, method);
      return sendJson(res, 200, { status: "ok", mode: this.currentBehaviour.mode });
    }
    if (path === "/admin/behaviour") {
      if (!this.authorized(req)) return this.unauthenticated(res);
      if (method === "GET") return sendJson(res, 200, this.currentBehaviour);
      if (method !== "POST") return methodNotAllowed(res, method);
      const body = await readJson(req);
      try {
        this.setBehaviour(body as Partial<SimBehaviour>);
      } catch (err) {
        return sendJson(res, 422, {
          title: "Invalid behaviour",
          detail: (err as Error).message,
          status: 422,
        });
      }
      return sendJson(res, 200, this.currentBehaviour);
    }
    if (!path.startsWith("/v1/")) return notFound(res);

    // Faults first, as a load balancer or rate limiter in front of the real API would answer.
    if (this.injectFault(res)) return;

    const file = /^\/v1\/files\/([^/]+)\/([^/]+)$/.exec(path);
    if (file) {
      if (method !== "GET" && method !== "HEAD") return methodNotAllowed(res, method);
      return this.serveFile(res, method, file[1]!, file[2]!);
    }

    if (!this.authorized(req)) return this.unauthenticated(res);

    if (path === "/v1/batches") {
      if (method === "POST") return this.createBatch(req, res);
      if (method === "GET") {
        const now = Date.now();
        const data = [...this.batches.values()].map((b) => this.batchView(b, now));
        return sendJson(res, 200, { object: "list", data });
      }
      return methodNotAllowed(res, method);
    }
    const batchRoute = /^\/v1\/batches\/([^/]+)(\/results)?$/.exec(path);
    if (batchRoute) {
      if (method !== "GET") return methodNotAllowed(res, method);
      const batch = this.batches.get(batchRoute[1]!);
      if (!batch) return notFound(res);
      const now = Date.now();
      return sendJson(
        res,
        200,
        batchRoute[2] ? this.batchResults(batch, now) : this.batchView(batch, now),
      );
    }

    const modelRoute = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path);
    if (modelRoute) {
      if (method !== "POST") return methodNotAllowed(res, method);
      const name = `${decodeURIComponent(modelRoute[1]!)}/${decodeURIComponent(modelRoute[2]!)}`;
      if (!isSimModel(name)) return notFound(res);
      return this.create(req, res, name);
    }
    if (path === "/v1/predictions") {
      if (method === "POST") return this.create(req, res, undefined);
      if (method === "GET") return this.list(res);
      return methodNotAllowed(res, method);
    }
    const cancel = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path);
    if (cancel) {
      if (method !== "POST") return methodNotAllowed(res, method);
      return this.cancel(res, cancel[1]!);
    }
    const get = /^\/v1\/predictions\/([^/]+)$/.exec(path);
    if (get) {
      if (method !== "GET") return methodNotAllowed(res, method);
      const p = this.predictions.get(get[1]!);
      return p ? sendJson(res, 200, this.view(p, Date.now())) : notFound(res);
    }
    if (path === "/v1/webhooks/default/secret") {
      if (method !== "GET") return methodNotAllowed(res, method);
      return sendJson(res, 200, { key: this.opts.webhookSecret });
    }
    return notFound(res);
  }

  /** Answers (or, for `hang`, deliberately does not) when the mode says so; true if handled. */
  private injectFault(res: ServerResponse): boolean {
    const b = this.currentBehaviour;
    switch (b.mode) {
      case "normal":
        return false;
      case "down":
        sendJson(res, 503, {
          title: "Service Unavailable",
          detail: "The simulated provider is down.",
          status: 503,
        });
        return true;
      case "rate-limited":
        sendJson(
          res,
          429,
          { detail: `Request was throttled. Your rate limit resets in ~${b.retryAfterSeconds}s.` },
          { "retry-after": String(b.retryAfterSeconds) },
        );
        return true;
      case "flaky":
        if (Math.random() >= b.flakyRate) return false;
        sendJson(res, 500, {
          title: "Internal Server Error",
          detail: "The simulated provider failed this request (flaky mode).",
          status: 500,
        });
        return true;
      case "hang":
        // Never answered: the client's own deadline is what is under test. `close` drops it.
        return true;
    }
  }

  private authorized(req: IncomingMessage): boolean {
    // Replicate takes `Bearer` and, from older clients, `Token`.
    const match = /^(?:Bearer|Token)\s+(.+)$/i.exec(req.headers.authorization ?? "");
    return !!match && timingSafeEqual(digestOf(match[1]!.trim()), this.tokenDigest);
  }

  private unauthenticated(res: ServerResponse): void {
    sendJson(res, 401, {
      title: "Unauthenticated",
      detail: "You did not pass a valid authentication token",
      status: 401,
    });
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (err instanceof BodyError) {
      if (!res.headersSent) {
        sendJson(res, err.status, {
          title: "Bad Request",
          detail: err.message,
          status: err.status,
        });
      }
      return;
    }
    this.log.warn({ err }, "sim-provider request failed");
    if (!res.headersSent) {
      sendJson(res, 500, {
        title: "Internal Server Error",
        detail: (err as Error).message,
        status: 500,
      });
    } else {
      res.destroy();
    }
  }

  // --- predictions -----------------------------------------------------------------------

  private async create(
    req: IncomingMessage,
    res: ServerResponse,
    routeModel: SimModelName | undefined,
  ): Promise<void> {
    const parsed = parseCreate(await readJson(req), routeModel);
    if (!parsed.ok) return sendJson(res, parsed.status, parsed.body);
    const r = parsed.request;
    const b = this.currentBehaviour;
    // Models on Replicate draw a seed when none is given and log it; so does this one.
    const now = Date.now();
    const p = this.newPrediction(r, b, now);
    this.predictions.set(p.id, p);
    if (p.webhook && p.events.size > 0) this.scheduleWebhooks(p);

    const waitSeconds = preferWaitSeconds(req);
    if (waitSeconds !== undefined) {
      // +2 ms: timers may fire a hair before their time, and the answer must be the final one.
      const until = Math.min(now + waitSeconds * 1000, settledAt(p) + 2);
      await this.sleep(until - Date.now(), p.waiters);
      if (this.closed) return;
    }
    sendJson(res, 201, this.view(p, Date.now()));
  }

  private newPrediction(r: CreateRequest, b: SimBehaviour, now: number): SimPrediction {
    // Models on Replicate draw a seed when none is given and log it; so does this one.
    const seed = r.seed ?? randomInt(0, 2 ** 31 - 1);
    const plan = simPlan(r.prompt, seed, b);
    return {
      id: newPredictionId(),
      model: r.model,
      input: r.input,
      prompt: r.prompt,
      seed,
      width: r.width,
      height: r.height,
      durationSeconds: r.durationSeconds,
      createdAt: now,
      defects: b.defects,
      timeline: buildTimeline(plan, b.progressSteps, seed),
      canceledAt: null,
      webhook: r.webhook,
      events: r.events,
      timers: new Set(),
      lastIntermediateAt: null,
      trailingScheduled: false,
      queue: [],
      pumping: false,
      waiters: new Set(),
    };
  }

  // --- batches ---------------------------------------------------------------------------

  private async createBatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req);
    const key = (req.headers["idempotency-key"] as string | undefined)?.trim() || null;
    const known = key ? this.batchesByKey.get(key) : undefined;
    if (known && this.batches.has(known)) {
      return sendJson(res, 200, this.batchView(this.batches.get(known)!, Date.now()));
    }
    const invalid = (detail: string) =>
      sendJson(res, 422, { title: "Invalid batch", detail, status: 422 });
    if (!isObject(body)) return invalid("the body must be an object");
    const model = body.model;
    if (typeof model !== "string" || !isSimModel(model))
      return invalid(`model must be one of ${Object.keys(SIM_MODELS).join(", ")}`);
    const items = body.items;
    if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH_ITEMS)
      return invalid(`items must hold 1 to ${MAX_BATCH_ITEMS} requests`);
    const requests: { customId: string; request: CreateRequest }[] = [];
    const seen = new Set<string>();
    for (const [i, item] of items.entries()) {
      if (!isObject(item) || typeof item.custom_id !== "string" || !item.custom_id)
        return invalid(`items[${i}].custom_id is required`);
      if (seen.has(item.custom_id)) return invalid(`items[${i}].custom_id is repeated`);
      seen.add(item.custom_id);
      const parsed = parseCreate({ input: item.input }, model);
      if (!parsed.ok) return sendJson(res, parsed.status, { ...parsed.body, item: i });
      requests.push({ customId: item.custom_id, request: parsed.request });
    }
    const now = Date.now();
    const b = this.currentBehaviour;
    const batch: SimBatch = {
      id: `batch_${newPredictionId()}`,
      model,
      createdAt: now,
      idempotencyKey: key,
      items: requests.map(({ customId, request }) => {
        const p = this.newPrediction({ ...request, webhook: null }, b, now);
        this.predictions.set(p.id, p);
        return { customId, predictionId: p.id };
      }),
    };
    this.batches.set(batch.id, batch);
    if (key) this.batchesByKey.set(key, batch.id);
    this.log.info({ batchId: batch.id, size: batch.items.length }, "sim-provider batch created");
    sendJson(res, 200, this.batchView(batch, now));
  }

  private batchView(batch: SimBatch, at: number) {
    let completed = 0;
    let failed = 0;
    let lastAt = batch.createdAt;
    for (const item of batch.items) {
      const p = this.predictions.get(item.predictionId);
      const status = p ? statusAt(p, at) : "failed";
      if (status === "succeeded") completed++;
      else if (isTerminal(status)) failed++;
      if (p && isTerminal(status)) lastAt = Math.max(lastAt, settledAt(p));
    }
    const done = completed + failed === batch.items.length;
    return {
      id: batch.id,
      object: "batch",
      model: batch.model,
      status: done ? "completed" : "in_progress",
      created_at: iso(batch.createdAt),
      completed_at: done ? iso(lastAt) : null,
      request_counts: { total: batch.items.length, completed, failed },
      metadata: batch.idempotencyKey ? { idempotency_key: batch.idempotencyKey } : {},
    };
  }

  /** One result per custom id: the item's prediction as it stands. */
  private batchResults(batch: SimBatch, at: number) {
    return {
      object: "list",
      data: batch.items.map((item) => {
        const p = this.predictions.get(item.predictionId);
        if (!p) {
          return { custom_id: item.customId, status: "failed", output: null, error: "expired" };
        }
        const view = this.view(p, at);
        return {
          custom_id: item.customId,
          status: view.status,
          output: view.output,
          error: view.error,
        };
      }),
    };
  }

  private list(res: ServerResponse): void {
    const now = Date.now();
    const results = [...this.predictions.values()]
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, 100)
      .map((p) => this.view(p, now));
    sendJson(res, 200, { previous: null, next: null, results });
  }

  private cancel(res: ServerResponse, id: string): void {
    const p = this.predictions.get(id);
    if (!p) return notFound(res);
    const now = Date.now();
    // A finished prediction stays as it is; Replicate answers it unchanged.
    if (!isTerminal(statusAt(p, now))) {
      p.canceledAt = now;
      for (const timer of p.timers) this.clearTimer(timer);
      p.timers.clear();
      for (const wake of p.waiters) wake();
      if (p.webhook && p.events.has("completed")) this.send(p, "completed", this.view(p, now));
    }
    sendJson(res, 200, this.view(p, now));
  }

  private serveFile(res: ServerResponse, method: string, id: string, name: string): void {
    const p = this.predictions.get(id);
    if (!p || statusAt(p, Date.now()) !== "succeeded") return notFound(res);
    if (name !== `0.${SIM_MODELS[p.model].extension}`) return notFound(res);
    let media = this.files.get(id);
    if (!media) {
      media = render(p);
      this.files.set(id, media);
      const oldest = this.files.keys().next();
      if (this.files.size > MAX_CACHED_FILES && !oldest.done) this.files.delete(oldest.value);
    }
    res.writeHead(200, {
      "content-type": media.contentType,
      "content-length": media.data.length,
      "cache-control": "public, max-age=3600, immutable",
    });
    res.end(method === "HEAD" ? undefined : media.data);
  }

  /** The prediction as Replicate would show it at time `at`. */
  private view(p: SimPrediction, at: number): PredictionJson {
    const status = statusAt(p, at);
    const tl = p.timeline;
    const cutoff = Math.min(at, p.canceledAt ?? Infinity) - p.createdAt;
    const startedAt = cutoff >= tl.startMs ? p.createdAt + tl.startMs : null;
    const completedAt = isTerminal(status) ? settledAt(p) : null;
    const logs = tl.lines.filter((line) => line.at <= cutoff).map((line) => `${line.text}\n`);
    const metrics: PredictionJson["metrics"] = {};
    if (completedAt !== null) {
      if (startedAt !== null) metrics.predict_time = (completedAt - startedAt) / 1000;
      metrics.total_time = (completedAt - p.createdAt) / 1000;
    }
    const url = `${this.publicUrl}/v1/predictions/${p.id}`;
    return {
      id: p.id,
      model: p.model,
      version: simModelVersion(p.model),
      input: p.input,
      output:
        status === "succeeded"
          ? [`${this.publicUrl}/v1/files/${p.id}/0.${SIM_MODELS[p.model].extension}`]
          : null,
      error: status === "failed" ? tl.error : null,
      logs: logs.join(""),
      status,
      created_at: iso(p.createdAt),
      started_at: startedAt === null ? null : iso(startedAt),
      completed_at: completedAt === null ? null : iso(completedAt),
      data_removed: false,
      urls: { get: url, cancel: `${url}/cancel` },
      metrics,
    };
  }

  /** Drops predictions an hour after they finished, as Replicate drops their data. */
  private sweep(): void {
    const horizon = Date.now() - RETENTION_MS;
    for (const [id, p] of this.predictions) {
      if (settledAt(p) < horizon && !p.pumping && p.queue.length === 0) {
        this.predictions.delete(id);
        this.files.delete(id);
      }
    }
    for (const [id, batch] of this.batches) {
      if (batch.items.every((item) => !this.predictions.has(item.predictionId))) {
        this.batches.delete(id);
        if (batch.idempotencyKey) this.batchesByKey.delete(batch.idempotencyKey);
      }
    }
  }

  // --- webhooks --------------------------------------------------------------------------

  /**
   * The events the filter asks about, at their instants of the course. Each body is the
   * prediction as it is at that instant, so webhooks and GETs tell the same story.
   */
  private scheduleWebhooks(p: SimPrediction): void {
    const tl = p.timeline;
    const end = p.createdAt + tl.endMs;
    const course: { when: number; run: () => void }[] = [];
    if (p.events.has("start")) {
      course.push({
        when: p.createdAt,
        run: () => this.send(p, "start", this.view(p, p.createdAt)),
      });
    }
    if (p.events.has("logs")) {
      for (const at of new Set(tl.lines.map((l) => l.at).filter((at) => at < tl.endMs))) {
        const when = p.createdAt + at;
        course.push({ when, run: () => this.intermediate(p, "logs", when) });
      }
    }
    course.push({
      when: end,
      run: () => {
        if (tl.outcome === "succeeded" && p.events.has("output"))
          this.intermediate(p, "output", end);
        if (p.events.has("completed")) this.send(p, "completed", this.view(p, end));
      },
    });
    this.runInOrder(p, course);
  }

  /**
   * One timer at a time, each arming the next: timers due in the same millisecond could
   * otherwise fire out of order, and webhooks must follow the course.
   */
  private runInOrder(p: SimPrediction, steps: { when: number; run: () => void }[], i = 0): void {
    const step = steps[i];
    if (!step) return;
    this.at(p, step.when, () => {
      step.run();
      this.runInOrder(p, steps, i + 1);
    });
  }

  /**
   * `logs` and `output` share one throttle window (Replicate: at most one per 500 ms). A logs
   * event inside the window is sent when it closes, carrying the logs as they are then, unless
   * the prediction has finished by then: the `completed` call carries everything.
   */
  private intermediate(p: SimPrediction, event: "logs" | "output", at: number): void {
    const last = p.lastIntermediateAt;
    if (last === null || at - last >= this.throttleMs) {
      p.lastIntermediateAt = at;
      this.send(p, event, event === "output" ? this.outputView(p, at) : this.view(p, at));
      return;
    }
    if (event === "output" || p.trailingScheduled) return;
    p.trailingScheduled = true;
    const trailing = last + this.throttleMs;
    this.at(p, trailing, () => {
      p.trailingScheduled = false;
      // Finished: `completed` carries the logs. Just sent by the course: nothing new to tell.
      if (isTerminal(statusAt(p, trailing))) return;
      const sent = p.lastIntermediateAt;
      if (sent !== null && trailing - sent < this.throttleMs) return;
      p.lastIntermediateAt = trailing;
      this.send(p, "logs", this.view(p, trailing));
    });
  }

  /** The moment the model has produced its output but the run is not yet closed. */
  private outputView(p: SimPrediction, at: number): PredictionJson {
    return { ...this.view(p, at), status: "processing", completed_at: null, metrics: {} };
  }

  private send(p: SimPrediction, event: WebhookEventType, body: PredictionJson): void {
    if (this.closed || !p.webhook) return;
    p.queue.push({
      id: `msg_${randomBytes(16).toString("hex")}`,
      event,
      body: JSON.stringify(body),
    });
    if (p.pumping) return;
    p.pumping = true;
    const pump = this.pump(p).finally(() => {
      p.pumping = false;
      this.pumps.delete(pump);
    });
    this.pumps.add(pump);
  }

  /** Delivers a prediction's webhooks one at a time, in the order of their events. */
  private async pump(p: SimPrediction): Promise<void> {
    while (!this.closed && p.queue.length > 0) {
      await this.deliver(p, p.queue[0]!);
      p.queue.shift();
    }
  }

  /**
   * Retry policy: up to WEBHOOK_MAX_ATTEMPTS tries, waiting `webhookRetryBaseMs` doubled per
   * attempt (or the receiver's Retry-After, capped). Stops on success, on an answer a retry
   * cannot change (4xx other than 408/429, or a redirect, which is not followed), and for
   * `start`/`logs`/`output` as soon as a newer event is queued, since that one carries the
   * whole prediction again. `completed` keeps trying until attempts run out.
   */
  private async deliver(p: SimPrediction, d: Delivery): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const result = await this.attempt(p.webhook!, d);
      if (this.closed || result.ok) return;
      const superseded = d.event !== "completed" && p.queue.length > 1;
      const context = { predictionId: p.id, event: d.event, webhookId: d.id, attempt, ...result };
      if (!result.retryable || superseded || attempt >= WEBHOOK_MAX_ATTEMPTS) {
        this.log.warn(context, "sim-provider gave up a webhook delivery");
        return;
      }
      this.log.warn(context, "sim-provider webhook delivery failed; retrying");
      await this.sleep(result.retryAfterMs ?? this.retryBaseMs * 2 ** (attempt - 1));
    }
  }

  private async attempt(
    url: string,
    d: Delivery,
  ): Promise<{
    ok: boolean;
    retryable: boolean;
    status?: number;
    retryAfterMs?: number;
    error?: string;
  }> {
    // Signed afresh per attempt: the timestamp is the attempt's, the id stays the event's.
    const sentAt = new Date();
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "gengate-sim-provider",
          "webhook-id": d.id,
          "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)),
          "webhook-signature": this.signer.sign(d.id, sentAt, d.body),
        },
        body: d.body,
        redirect: "manual",
        signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(WEBHOOK_TIMEOUT_MS)]),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return { ok: true, retryable: false, status: res.status };
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      return {
        ok: false,
        retryable,
        status: res.status,
        retryAfterMs: retryable ? retryAfterMs(res.headers.get("retry-after")) : undefined,
      };
    } catch (err) {
      return { ok: false, retryable: true, error: (err as Error).message };
    }
  }

  // --- timers ----------------------------------------------------------------------------

  /** Runs `fn` at absolute time `when`, owned by the prediction (a cancel drops it). */
  private at(p: SimPrediction, when: number, fn: () => void): void {
    if (this.closed) return;
    const timer = setTimeout(
      () => {
        this.timers.delete(timer);
        p.timers.delete(timer);
        fn();
      },
      Math.max(0, when - Date.now()),
    );
    this.timers.add(timer);
    p.timers.add(timer);
  }

  private clearTimer(timer: NodeJS.Timeout): void {
    clearTimeout(timer);
    this.timers.delete(timer);
  }

  /** Waits `ms`, or less when `close` runs or a resolver in `wakers` is called. */
  private sleep(ms: number, wakers?: Set<() => void>): Promise<void> {
    if (this.closed || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.timers.delete(timer);
        this.sleepers.delete(wake);
        wakers?.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.timers.add(timer);
      this.sleepers.add(wake);
      wakers?.add(wake);
    });
  }
}
