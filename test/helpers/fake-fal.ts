import {
  createHash,
  generateKeyPairSync,
  randomUUID,
  sign as ed25519Sign,
  type KeyObject,
} from "node:crypto";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A local stand-in for fal's queue API (https://docs.fal.ai/model-endpoints/queue), driven by
 * the test: jobs move only when the test says so, so nothing depends on timing.
 *
 * Shapes follow fal's docs and fal-js: submit at `/{owner}/{app}[/{subpath}]`, everything else at
 * `/{owner}/{app}/requests/{id}[/status|/cancel]` — a status or result URL that keeps the
 * subpath is answered 404, so a client that gets this wrong fails here as it would at fal.
 * Webhooks are delivered on completion, signed with an Ed25519 key whose public half is served
 * at `/.well-known/jwks.json`.
 */
export interface FakeFalOptions {
  /** The key `Authorization: Key <apiKey>` must carry. @defaultValue "fake-fal-key" */
  apiKey?: string;
  /** Apps that exist (`owner/app`, or `namespace/owner/app`). @defaultValue DEFAULT_APPS */
  apps?: string[];
  /** The user id webhooks are signed for. @defaultValue "fake-user" */
  userId?: string;
  /** Clock for webhook timestamps, in ms. @defaultValue Date.now */
  now?: () => number;
}

/** `fal-ai/forever` takes jobs that run and never finish. */
export const DEFAULT_APPS = [
  "fal-ai/flux",
  "fal-ai/kling-video",
  "fal-ai/stable-audio",
  "fal-ai/forever",
  "workflows/acme/pipeline",
];

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** Parsed JSON when the body is JSON, else the text ("" when empty). */
  body: unknown;
}

export interface WebhookDelivery {
  url: string;
  headers: Record<string, string>;
  rawBody: Buffer;
  /** The receiver's answer. */
  status: number;
}

export interface InjectedResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface LogLine {
  message: string;
  level: string;
  source: "USER";
  timestamp: string;
}

interface Job {
  id: string;
  app: string;
  subpath: string;
  input: unknown;
  state: "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED";
  queuePosition: number;
  logs: LogLine[];
  outcome?: InjectedResponse;
  webhookUrl?: string;
}

const NAMESPACES = new Set(["workflows", "comfy"]);

export class FakeFal {
  readonly requests: RecordedRequest[] = [];
  readonly deliveries: WebhookDelivery[] = [];
  readonly url: string;
  readonly jwksUrl: string;
  readonly apiKey: string;
  readonly userId: string;
  private readonly apps: Set<string>;
  private readonly now: () => number;
  private readonly jobs = new Map<string, Job>();
  private readonly files = new Map<string, { data: Buffer; contentType: string }>();
  private readonly injected: Array<InjectedResponse | "hang"> = [];
  private keys: { kid: string; privateKey: KeyObject; publicKey: KeyObject };

  private constructor(
    private readonly server: Server,
    opts: FakeFalOptions,
  ) {
    const { port } = server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    this.jwksUrl = `${this.url}/.well-known/jwks.json`;
    this.apiKey = opts.apiKey ?? "fake-fal-key";
    this.userId = opts.userId ?? "fake-user";
    this.apps = new Set(opts.apps ?? DEFAULT_APPS);
    this.now = opts.now ?? Date.now;
    this.keys = newKeys();
  }

  static async start(opts: FakeFalOptions = {}): Promise<FakeFal> {
    // The handler needs the instance, which needs the listening server's port.
    const ready: { fake?: FakeFal } = {};
    const server = createServer((req, res) => {
      ready.fake!.handle(req, res).catch((err: Error) => {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ detail: `fake fal crashed: ${err.message}` }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    ready.fake = new FakeFal(server, opts);
    return ready.fake;
  }

  async close(): Promise<void> {
    // Hung responses hold their sockets open: drop them so close() returns.
    this.server.closeAllConnections();
    await new Promise<void>((resolve, reject) =>
      this.server.close((err) => (err ? reject(err) : resolve())),
    );
  }

  /** Requests to the queue API only (not the JWKS or files). */
  queueRequests(): RecordedRequest[] {
    return this.requests.filter(
      (r) => !r.path.startsWith("/files/") && !r.path.startsWith("/.well-known/"),
    );
  }

  /** The next queue API request gets this answer instead (one per call, in order). */
  failNext(response: InjectedResponse): void {
    this.injected.push(response);
  }

  /** The next queue API request is never answered (until close()). */
  hangNext(): void {
    this.injected.push("hang");
  }

  /** Serves bytes at `/files/<name>`; returns the URL. */
  addFile(name: string, data: Buffer, contentType: string): string {
    this.files.set(name, { data, contentType });
    return `${this.url}/files/${encodeURIComponent(name)}`;
  }

  /** Puts the job back in the queue at this position. */
  queue(requestId: string, position: number): void {
    const job = this.job(requestId);
    job.state = "IN_QUEUE";
    job.queuePosition = position;
  }

  /** The job is running and printed these log lines. */
  progress(requestId: string, opts: { logs?: string[] } = {}): void {
    const job = this.job(requestId);
    job.state = "IN_PROGRESS";
    job.logs.push(...(opts.logs ?? []).map((m) => this.logLine(m)));
  }

  /** The job succeeded with this result; resolves once its webhook (if any) was answered. */
  async complete(requestId: string, result: unknown): Promise<WebhookDelivery | undefined> {
    const job = this.finish(requestId, { status: 200, body: result });
    if (!job.webhookUrl) return undefined;
    return this.deliver(job.webhookUrl, {
      request_id: job.id,
      gateway_request_id: job.id,
      status: "OK",
      payload: result,
    });
  }

  /** The job failed: its result URL answers this; its webhook (if any) reports ERROR. */
  async error(
    requestId: string,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): Promise<WebhookDelivery | undefined> {
    const job = this.finish(requestId, { status, body, headers });
    if (!job.webhookUrl) return undefined;
    return this.deliver(job.webhookUrl, {
      request_id: job.id,
      gateway_request_id: job.id,
      status: "ERROR",
      error: `Invalid status code: ${status}`,
      payload: body,
    });
  }

  /** fal's webhook signature headers for a body, as fal would send them. */
  sign(opts: {
    requestId: string;
    body: Buffer | string;
    timestampS?: number;
    userId?: string;
    privateKey?: KeyObject;
  }): Record<string, string> {
    const timestamp = String(opts.timestampS ?? Math.floor(this.now() / 1000));
    const userId = opts.userId ?? this.userId;
    const bodyHash = createHash("sha256").update(opts.body).digest("hex");
    const message = Buffer.from(`${opts.requestId}\n${userId}\n${timestamp}\n${bodyHash}`);
    const signature = ed25519Sign(null, message, opts.privateKey ?? this.keys.privateKey);
    return {
      "x-fal-webhook-request-id": opts.requestId,
      "x-fal-webhook-user-id": userId,
      "x-fal-webhook-timestamp": timestamp,
      "x-fal-webhook-signature": signature.toString("hex"),
    };
  }

  /** Replaces the signing key: the JWKS publishes only the new one from now on. */
  rotateKey(): void {
    this.keys = newKeys();
  }

  private job(requestId: string): Job {
    const job = this.jobs.get(requestId);
    if (!job) throw new Error(`fake fal: no request ${requestId}`);
    return job;
  }

  private finish(requestId: string, outcome: InjectedResponse): Job {
    const job = this.job(requestId);
    if (job.app === "fal-ai/forever") throw new Error("fake fal: fal-ai/forever never finishes");
    job.state = "COMPLETED";
    job.outcome = outcome;
    return job;
  }

  private async deliver(url: string, payload: unknown): Promise<WebhookDelivery> {
    const rawBody = Buffer.from(JSON.stringify(payload));
    const requestId = (payload as { request_id: string }).request_id;
    const headers = {
      "content-type": "application/json",
      ...this.sign({ requestId, body: rawBody }),
    };
    const res = await fetch(url, { method: "POST", headers, body: rawBody });
    await res.arrayBuffer();
    const delivery = { url, headers, rawBody, status: res.status };
    this.deliveries.push(delivery);
    return delivery;
  }

  private logLine(message: string): LogLine {
    return {
      message,
      level: "INFO",
      source: "USER",
      timestamp: new Date(this.now()).toISOString(),
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const raw = await readBody(req);
    const text = raw.toString("utf8");
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : "";
    } catch {
      // Not JSON: recorded as text.
    }
    this.requests.push({
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body,
    });

    if (req.method === "GET" && url.pathname === "/.well-known/jwks.json") {
      const jwk = this.keys.publicKey.export({ format: "jwk" });
      return send(res, 200, { keys: [{ ...jwk, kid: this.keys.kid, alg: "EdDSA", use: "sig" }] });
    }
    if (req.method === "GET" && url.pathname.startsWith("/files/")) {
      const file = this.files.get(decodeURIComponent(url.pathname.slice("/files/".length)));
      if (!file) return send(res, 404, { detail: "File not found" });
      res.writeHead(200, { "content-type": file.contentType });
      res.end(file.data);
      return;
    }

    const injected = this.injected.shift();
    if (injected === "hang") return; // Never answered; close() drops the socket.
    if (injected) return send(res, injected.status, injected.body ?? null, injected.headers);

    if (req.headers.authorization !== `Key ${this.apiKey}`)
      return send(res, 401, { detail: "No user found for Key ID and Secret" });

    const requestPath = /^\/(.+)\/requests\/([^/]+)(\/status|\/cancel)?$/.exec(url.pathname);
    if (requestPath) {
      const [, app, id, action] = requestPath;
      const job = this.jobs.get(id!);
      if (!job || job.app !== app) {
        if (action === "/cancel") return send(res, 404, { status: "NOT_FOUND" });
        return send(res, 404, { detail: "Request not found" });
      }
      if (action === "/status" && req.method === "GET")
        return this.status(res, job, url.searchParams.get("logs") === "1");
      if (action === "/cancel" && req.method === "PUT") return this.cancel(res, job);
      if (!action && req.method === "GET") return this.result(res, job);
      return send(res, 405, { detail: "Method Not Allowed" });
    }
    if (req.method === "POST") return this.submit(res, url, body);
    return send(res, 404, { detail: "Not Found" });
  }

  private submit(res: ServerResponse, url: URL, input: unknown): void {
    const parts = url.pathname.slice(1).split("/");
    const size = NAMESPACES.has(parts[0] ?? "") ? 3 : 2;
    const app = parts.slice(0, size).join("/");
    if (!this.apps.has(app)) return send(res, 404, { detail: `Application '${app}' not found` });
    const prompt = (input as { prompt?: unknown } | null)?.prompt;
    if (typeof prompt !== "string" || !prompt) {
      return send(res, 422, {
        detail: [{ loc: ["body", "prompt"], msg: "field required", type: "value_error.missing" }],
      });
    }
    const forever = app === "fal-ai/forever";
    const job: Job = {
      id: randomUUID(),
      app,
      subpath: parts.slice(size).join("/"),
      input,
      state: forever ? "IN_PROGRESS" : "IN_QUEUE",
      queuePosition: 0,
      logs: forever ? [this.logLine("warming up")] : [],
      webhookUrl: url.searchParams.get("fal_webhook") ?? undefined,
    };
    this.jobs.set(job.id, job);
    send(res, 200, { ...this.urls(job), queue_position: job.queuePosition });
  }

  private status(res: ServerResponse, job: Job, withLogs: boolean): void {
    const base = { request_id: job.id, response_url: this.urls(job).response_url };
    const logs = withLogs ? job.logs : null;
    switch (job.state) {
      case "IN_QUEUE":
        return send(res, 202, { ...base, status: "IN_QUEUE", queue_position: job.queuePosition });
      case "IN_PROGRESS":
        return send(res, 202, { ...base, status: "IN_PROGRESS", logs });
      case "COMPLETED":
        return send(res, 200, {
          ...base,
          status: "COMPLETED",
          logs,
          metrics: { inference_time: 1.5 },
        });
    }
  }

  private result(res: ServerResponse, job: Job): void {
    if (job.state !== "COMPLETED" || !job.outcome)
      return send(res, 400, { detail: "Request is still in progress" });
    send(res, job.outcome.status, job.outcome.body ?? null, job.outcome.headers);
  }

  private cancel(res: ServerResponse, job: Job): void {
    switch (job.state) {
      case "IN_QUEUE":
        // Removed from the queue before it ran: its result says the client cancelled it.
        job.state = "COMPLETED";
        job.outcome = {
          status: 499,
          body: { detail: "Request cancelled by the client", error_type: "client_cancelled" },
          headers: { "x-fal-error-type": "client_cancelled" },
        };
        return send(res, 200, { status: "OK" });
      case "IN_PROGRESS":
        return send(res, 202, { status: "CANCELLATION_REQUESTED" });
      case "COMPLETED":
        return send(res, 400, { status: "ALREADY_COMPLETED" });
    }
  }

  private urls(job: Job) {
    const base = `${this.url}/${job.app}/requests/${job.id}`;
    return {
      request_id: job.id,
      response_url: base,
      status_url: `${base}/status`,
      cancel_url: `${base}/cancel`,
    };
  }
}

function newKeys() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { kid: randomUUID(), privateKey, publicKey };
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
