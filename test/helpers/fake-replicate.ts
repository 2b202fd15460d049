import { randomBytes } from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { deferred, type Deferred } from "../../src/common/deferred";
import { renderImage } from "../../src/providers/simulated/sim-render";

/**
 * A local Replicate: a real HTTP server on 127.0.0.1 that answers the predictions API with
 * Replicate's documented request and response shapes (create through the models endpoint or
 * `/predictions` with a version, get, cancel; Replicate's 401/404/422/429 bodies), delivers
 * Standard Webhooks-signed webhooks on every state change, and serves output files.
 *
 * Predictions only move when the test moves them (`advance`, `succeed`, `fail`, `abort`, or
 * a cancel request), so a prediction nobody finishes is a job that never ends; `neverEnd`
 * makes one that also keeps printing logs. `failNext` and `hangNext` script the next answers.
 */

export const FAKE_REPLICATE_TOKEN = "r8_fake_replicate_token";
/** The Standard Webhooks documentation's example secret. */
export const FAKE_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/** An official model, run through `POST /v1/models/{owner}/{name}/predictions`. */
export const FAKE_OFFICIAL_MODEL = "black-forest-labs/flux-schnell";
export const FAKE_VERSION_ID = "39ed52f2a60c3b36b96384b26f1ea038975f5eb7038441422695639c44840c5f";
/** A community model pinned to a version, run through `POST /v1/predictions`. */
export const FAKE_VERSIONED_MODEL = `stability-ai/sdxl:${FAKE_VERSION_ID}`;

export type PredictionStatus =
  "starting" | "processing" | "succeeded" | "failed" | "canceled" | "aborted";
export type WebhookEventType = "start" | "output" | "logs" | "completed";
const WEBHOOK_EVENT_TYPES: readonly WebhookEventType[] = ["start", "output", "logs", "completed"];
/** Replicate's default when `webhook_events_filter` is left out. */
const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEventType[] = ["output", "completed"];

/** The prediction object as Replicate serves it. */
export interface FakePrediction {
  id: string;
  model: string;
  version: string | null;
  input: Record<string, unknown>;
  logs: string;
  output: unknown;
  error: string | null;
  status: PredictionStatus;
  data_removed: boolean;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  metrics: { predict_time?: number; total_time?: number };
  urls: { get: string; cancel: string; web: string };
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, or the raw text when it is not JSON, or undefined when empty. */
  body: unknown;
}

export interface WebhookDelivery {
  predictionId: string;
  event: WebhookEventType;
  url: string;
  headers: SignedWebhookHeaders;
  body: string;
  /** The receiver's status, 0 when it could not be reached. */
  status: number;
}

export interface FakeReplicateOptions {
  /** @defaultValue FAKE_REPLICATE_TOKEN */
  token?: string;
  /** Signs outgoing webhooks. @defaultValue FAKE_WEBHOOK_SECRET */
  webhookSecret?: string;
  /** Official models the models endpoint knows. @defaultValue [FAKE_OFFICIAL_MODEL] */
  models?: string[];
  /** Version ids `/predictions` knows, with their model. @defaultValue FAKE_VERSION_ID of stability-ai/sdxl */
  versions?: Record<string, string>;
}

interface Fault {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

interface Job {
  prediction: FakePrediction;
  webhook?: string;
  events: Set<WebhookEventType>;
  neverEnds: boolean;
}

const ERROR_BODIES: Record<number, unknown> = {
  401: {
    title: "Unauthenticated",
    detail: "You did not pass a valid authentication token",
    status: 401,
  },
  404: { detail: "The requested resource could not be found.", status: 404 },
  429: { detail: "Request was throttled. Your rate limit resets in ~30s." },
  500: "Internal Server Error",
};

/**
 * The picture every `.png` output is: a real 512x512 image (the size the end-to-end tests ask
 * for), since the quality gate refuses a flat, black or wrongly sized one. Rendered once.
 */
let picture: Buffer | undefined;
function outputPng(): Buffer {
  picture ??= renderImage({
    prompt: "fake replicate output",
    seed: 1,
    width: 512,
    height: 512,
  }).data;
  return picture;
}

const FILE_TYPES: Record<string, string> = {
  png: "image/png",
  jpg: "image/jpeg",
  webp: "image/webp",
  mp4: "video/mp4",
  mp3: "audio/mpeg",
  wav: "audio/wav",
};

export class FakeReplicate {
  /** Base URL of the API, as the adapter's `baseUrl`: `http://127.0.0.1:<port>/v1`. */
  readonly url: string;
  readonly origin: string;
  readonly token: string;
  readonly webhookSecret: string;
  /** Every request received, in order (file downloads included). */
  readonly requests: RecordedRequest[] = [];
  /** Every webhook sent, in order, with the receiver's answer. */
  readonly deliveries: WebhookDelivery[] = [];

  private readonly jobs = new Map<string, Job>();
  private readonly models: Set<string>;
  private readonly versions: Record<string, string>;
  private readonly faults: Fault[] = [];
  private hangs = 0;
  private nextCreateOutput: unknown = undefined;
  private readonly pending = new Set<Promise<void>>();

  private constructor(
    private readonly server: Server,
    port: number,
    opts: FakeReplicateOptions,
  ) {
    this.origin = `http://127.0.0.1:${port}`;
    this.url = `${this.origin}/v1`;
    this.token = opts.token ?? FAKE_REPLICATE_TOKEN;
    this.webhookSecret = opts.webhookSecret ?? FAKE_WEBHOOK_SECRET;
    this.models = new Set(opts.models ?? [FAKE_OFFICIAL_MODEL]);
    this.versions = opts.versions ?? { [FAKE_VERSION_ID]: "stability-ai/sdxl" };
  }

  static async start(opts: FakeReplicateOptions = {}): Promise<FakeReplicate> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const fake = new FakeReplicate(server, (server.address() as AddressInfo).port, opts);
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      fake.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { detail: String(err) });
      });
    });
    return fake;
  }

  /** A URL the fake serves bytes at (`GET /files/<name>`), for use as a prediction output. */
  fileUrl(name: string): string {
    return `${this.origin}/files/${name}`;
  }

  prediction(id: string): FakePrediction {
    return this.job(id).prediction;
  }

  /** The id of the most recently created prediction. */
  lastPredictionId(): string {
    const ids = [...this.jobs.keys()];
    if (ids.length === 0) throw new Error("fake replicate: no prediction created yet");
    return ids[ids.length - 1]!;
  }

  /**
   * Moves a prediction along while it runs; `logs` is appended to the cumulative logs, as a
   * model printing. Sends an `output` webhook when output is given, else a `logs` one.
   */
  advance(
    id: string,
    status: "starting" | "processing",
    update: { logs?: string; output?: unknown } = {},
  ): Promise<void> {
    const p = this.active(id);
    p.status = status;
    if (status === "processing") p.started_at ??= now();
    if (update.logs) p.logs += update.logs;
    if (update.output !== undefined) p.output = update.output;
    return this.deliver(id, update.output !== undefined ? "output" : "logs");
  }

  /** Finishes a prediction with `output` exactly as the model would return it. */
  succeed(id: string, output: unknown, predictTime = 1.5): Promise<void> {
    return this.finish(id, "succeeded", (p) => {
      p.output = output;
      p.metrics = { predict_time: predictTime, total_time: predictTime + 0.5 };
    });
  }

  fail(id: string, error: string): Promise<void> {
    return this.finish(id, "failed", (p) => {
      p.error = error;
      p.logs += `${error}\n`;
    });
  }

  /** The deadline passed before the prediction could start. */
  abort(id: string): Promise<void> {
    return this.finish(id, "aborted", () => undefined);
  }

  /** The prediction runs forever, printing a log line (with no percentage) at every look. */
  neverEnd(id: string): Promise<void> {
    this.job(id).neverEnds = true;
    return this.advance(id, "processing", { logs: "loading weights\n" });
  }

  /**
   * The next `times` API requests (files excluded) get `status` with Replicate's body for it,
   * and a `Retry-After` header when given.
   */
  failNext(
    status: 401 | 404 | 429 | 500 | 502 | 503,
    opts: { times?: number; retryAfter?: string; body?: unknown } = {},
  ): void {
    for (let i = 0; i < (opts.times ?? 1); i++) {
      this.faults.push({
        status,
        headers: opts.retryAfter ? { "retry-after": opts.retryAfter } : {},
        body: opts.body ?? ERROR_BODIES[status] ?? "",
      });
    }
  }

  /** The next `times` API requests are read and never answered. */
  hangNext(times = 1): void {
    this.hangs += times;
  }

  /** The next create answers with a prediction already succeeded with `output`. */
  succeedNextCreate(output: unknown): void {
    this.nextCreateOutput = output;
  }

  /** Resolves once every webhook sent on the fake's own initiative has been answered. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  async close(): Promise<void> {
    await this.idle();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const path = new URL(req.url ?? "/", this.origin).pathname;
    const method = req.method ?? "GET";
    this.requests.push({ method, path, headers: req.headers, body: parseBody(raw) });

    // Output files live on a CDN, outside the API's auth and limits.
    if (method === "GET" && path.startsWith("/files/")) return this.serveFile(res, path.slice(7));
    if (this.hangs > 0) {
      this.hangs--;
      return;
    }
    const fault = this.faults.shift();
    if (fault) return send(res, fault.status, fault.body, fault.headers);
    if (req.headers.authorization !== `Bearer ${this.token}`)
      return send(res, 401, ERROR_BODIES[401]);

    let m: RegExpExecArray | null;
    if (method === "POST" && (m = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path))) {
      const model = `${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`;
      if (!this.models.has(model)) return send(res, 404, ERROR_BODIES[404]);
      return this.create(res, parseBody(raw), { model, version: null });
    }
    if (method === "POST" && path === "/v1/predictions") {
      const body = parseBody(raw);
      const requested = isObject(body) && typeof body.version === "string" ? body.version : "";
      // Since 2025 `version` may also be `owner/name:version` or an official `owner/name`.
      const versionId = requested.includes(":") ? requested.split(":")[1]! : requested;
      if (this.models.has(requested))
        return this.create(res, body, { model: requested, version: null }, true);
      if (requested && !this.versions[versionId]) {
        return send(res, 422, {
          title: "Invalid version or not permitted",
          detail:
            "The specified version does not exist (or perhaps you don't have permission to use it?)",
          status: 422,
        });
      }
      return this.create(
        res,
        body,
        { model: this.versions[versionId] ?? "", version: versionId || null },
        true,
      );
    }
    if (method === "GET" && (m = /^\/v1\/predictions\/([^/]+)$/.exec(path))) {
      const job = this.jobs.get(m[1]!);
      if (!job) return send(res, 404, ERROR_BODIES[404]);
      if (job.neverEnds) job.prediction.logs += "still working...\n";
      return send(res, 200, job.prediction);
    }
    if (method === "POST" && (m = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path))) {
      const job = this.jobs.get(m[1]!);
      if (!job) return send(res, 404, ERROR_BODIES[404]);
      // Canceling a finished prediction changes nothing and still answers with it.
      if (isRunning(job.prediction.status)) {
        this.track(this.finish(job.prediction.id, "canceled", () => undefined));
      }
      return send(res, 200, job.prediction);
    }
    return send(res, 404, ERROR_BODIES[404]);
  }

  private create(
    res: ServerResponse,
    body: unknown,
    target: { model: string; version: string | null },
    versionAllowed = false,
  ): void {
    const invalid = validateCreate(body, versionAllowed);
    if (invalid.length > 0) {
      return send(res, 422, {
        detail: invalid
          .map((f) => (f.field ? `- ${f.field}: ${f.description}` : `- ${f.description}`))
          .join("\n")
          .concat("\n"),
        status: 422,
        title: "Input validation failed",
        invalid_fields: invalid,
      });
    }
    const b = body as CreateBody;
    const id = predictionId();
    const prediction: FakePrediction = {
      id,
      model: target.model,
      version: target.version,
      input: b.input,
      logs: "",
      output: null,
      error: null,
      status: "starting",
      data_removed: false,
      created_at: now(),
      started_at: null,
      completed_at: null,
      metrics: {},
      urls: {
        get: `${this.url}/predictions/${id}`,
        cancel: `${this.url}/predictions/${id}/cancel`,
        web: `https://replicate.com/p/${id}`,
      },
    };
    this.jobs.set(id, {
      prediction,
      webhook: b.webhook,
      events: new Set(b.webhook_events_filter ?? DEFAULT_WEBHOOK_EVENTS),
      neverEnds: false,
    });
    const output = this.nextCreateOutput;
    this.nextCreateOutput = undefined;
    if (output !== undefined) {
      prediction.status = "succeeded";
      prediction.output = output;
      prediction.started_at = prediction.completed_at = now();
      prediction.metrics = { predict_time: 0.2, total_time: 0.3 };
    }
    send(res, 201, prediction);
    this.track(this.deliver(id, output !== undefined ? "completed" : "start"));
  }

  private finish(
    id: string,
    status: "succeeded" | "failed" | "canceled" | "aborted",
    apply: (p: FakePrediction) => void,
  ): Promise<void> {
    const p = this.active(id);
    p.status = status;
    p.completed_at = now();
    apply(p);
    return this.deliver(id, "completed");
  }

  private deliver(id: string, event: WebhookEventType): Promise<void> {
    const job = this.job(id);
    if (!job.webhook || !job.events.has(event)) return Promise.resolve();
    const url = job.webhook;
    const body = JSON.stringify(job.prediction);
    const headers = signWebhook(body, { secret: this.webhookSecret });
    const record = (status: number): void => {
      this.deliveries.push({ predictionId: id, event, url, headers, body, status });
    };
    return fetch(url, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body,
      signal: AbortSignal.timeout(5_000),
    }).then(
      async (res) => {
        await res.arrayBuffer();
        record(res.status);
      },
      () => record(0),
    );
  }

  private track(p: Promise<void>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  private job(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new Error(`fake replicate: no prediction ${id}`);
    return job;
  }

  private active(id: string): FakePrediction {
    const p = this.job(id).prediction;
    if (!isRunning(p.status)) throw new Error(`fake replicate: prediction ${id} is ${p.status}`);
    return p;
  }

  private serveFile(res: ServerResponse, name: string): void {
    const ext = /^[\w-]+\.(\w+)$/.exec(name)?.[1];
    const type = ext ? FILE_TYPES[ext] : undefined;
    if (!type) return send(res, 404, ERROR_BODIES[404]);
    const bytes = ext === "png" ? outputPng() : Buffer.from(`fake ${name}`);
    res.writeHead(200, { "content-type": type, "content-length": bytes.length });
    res.end(bytes);
  }
}

export type SignedWebhookHeaders = Record<
  "webhook-id" | "webhook-timestamp" | "webhook-signature",
  string
>;

/** Standard Webhooks headers for `body`, as Replicate sends them. */
export function signWebhook(
  body: string | Buffer,
  opts: { secret: string; id?: string; timestamp?: Date },
): SignedWebhookHeaders {
  const id = opts.id ?? `msg_${randomBytes(12).toString("hex")}`;
  const timestamp = opts.timestamp ?? new Date();
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(timestamp.getTime() / 1000)),
    "webhook-signature": new Webhook(opts.secret).sign(id, timestamp, body),
  };
}

/** What a webhook endpoint received: the shape `ProviderAdapter.parseWebhook` takes. */
export interface ReceivedWebhook {
  headers: Record<string, string | undefined>;
  rawBody: Buffer;
}

export interface WebhookReceiver {
  /** Where to point `webhookUrl`. */
  url: string;
  /** Resolves with the next delivery (already received or still to come), in order. */
  next(): Promise<ReceivedWebhook>;
  close(): Promise<void>;
}

/** A real HTTP endpoint on a free port that keeps what it is sent and answers 204. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const waiting: Deferred<ReceivedWebhook>[] = [];
  const server = createServer((req, res) => {
    void readBody(req).then((rawBody) => {
      const headers: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(req.headers))
        headers[k] = Array.isArray(v) ? v.join(", ") : v;
      res.writeHead(204).end();
      const delivery = { headers, rawBody };
      const waiter = waiting.shift();
      if (waiter) waiter.resolve(delivery);
      else received.push(delivery);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/replicate`,
    next() {
      const ready = received.shift();
      if (ready) return Promise.resolve(ready);
      const d = deferred<ReceivedWebhook>();
      waiting.push(d);
      return d.promise;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

interface CreateBody {
  input: Record<string, unknown>;
  version?: string;
  webhook?: string;
  webhook_events_filter?: WebhookEventType[];
}

interface InvalidField {
  type: string;
  field: string;
  description: string;
}

/** Replicate's validation of a create body: strict at the top level, `prompt` required. */
function validateCreate(body: unknown, versionAllowed: boolean): InvalidField[] {
  if (!isObject(body)) return [{ type: "invalid_type", field: "", description: "Invalid JSON" }];
  const invalid: InvalidField[] = [];
  const allowed = ["input", "webhook", "webhook_events_filter", "stream"];
  if (versionAllowed) allowed.push("version");
  if (versionAllowed && typeof body.version !== "string")
    invalid.push({ type: "required", field: "", description: "version is required" });
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      invalid.push({
        type: "additional_property_not_allowed",
        field: "",
        description: `Additional property ${key} is not allowed`,
      });
    }
  }
  if (!isObject(body.input)) {
    invalid.push({ type: "required", field: "", description: "input is required" });
  } else if (typeof body.input.prompt !== "string" || body.input.prompt === "") {
    invalid.push({ type: "required", field: "input", description: "prompt is required" });
  }
  if (
    body.webhook !== undefined &&
    (typeof body.webhook !== "string" || !URL.canParse(body.webhook))
  )
    invalid.push({ type: "format", field: "webhook", description: "Does not match format 'uri'" });
  const events = body.webhook_events_filter;
  if (events !== undefined) {
    const list = Array.isArray(events) ? events : [events];
    list.forEach((e, i) => {
      if (!WEBHOOK_EVENT_TYPES.includes(e as WebhookEventType)) {
        invalid.push({
          type: "enum",
          field: `webhook_events_filter.${i}`,
          description: `webhook_events_filter.${i} must be one of the following: "start", "output", "logs", "completed"`,
        });
      }
    });
  }
  return invalid;
}

function isRunning(status: PredictionStatus): boolean {
  return status === "starting" || status === "processing";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function predictionId(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  return [...randomBytes(26)].map((b) => alphabet[b % 32]).join("");
}

function now(): string {
  return new Date().toISOString();
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function parseBody(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  const text = raw.toString("utf8");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": typeof body === "string" ? "text/plain" : "application/json",
    ...headers,
  });
  res.end(text);
}
