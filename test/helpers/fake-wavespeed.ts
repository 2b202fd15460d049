import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { PNG } from "pngjs";

/**
 * A WaveSpeedAI v3 stand-in on 127.0.0.1: the real paths, envelope, statuses and webhook
 * signature (`v3,<hex>` HMAC-SHA256 over `{id}.{timestamp}.{body}`, key = secret without
 * `whsec_`). Each prediction walks through a plan of statuses, one step per result poll.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

export interface JobPlan {
  /** Statuses reported by successive result polls; the last one repeats forever. */
  statuses: Array<"created" | "processing" | "completed" | "failed">;
  nsfw?: boolean;
  /** Task error code and message when the plan ends in `failed`. */
  code?: number;
  error?: string;
}

interface FakeJob {
  id: string;
  model: string;
  input: Record<string, unknown>;
  webhook?: string;
  plan: JobPlan;
  step: number;
}

interface InjectedResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Never answer (until the server closes). */
  hang?: boolean;
}

export interface FakeWaveSpeedOptions {
  apiKey?: string;
  webhookSecret?: string;
  models?: string[];
}

const DEFAULT_PLAN: JobPlan = { statuses: ["created", "processing", "completed"] };

export class FakeWaveSpeed {
  readonly requests: RecordedRequest[] = [];
  readonly apiKey: string;
  readonly webhookSecret: string;
  url = "";
  private readonly jobs = new Map<string, FakeJob>();
  private readonly injected: InjectedResponse[] = [];
  private readonly plans: JobPlan[] = [];
  private readonly models: Set<string>;
  private readonly server: http.Server;
  private readonly png: Buffer;

  private constructor(opts: FakeWaveSpeedOptions) {
    this.apiKey = opts.apiKey ?? "ws-test-key";
    this.webhookSecret = opts.webhookSecret ?? "whsec_fake-wavespeed-secret";
    this.models = new Set(
      opts.models ?? ["wavespeed-ai/flux-dev", "wavespeed-ai/wan-2.1/t2v-480p"],
    );
    this.png = PNG.sync.write(new PNG({ width: 8, height: 8 }));
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  static async start(opts: FakeWaveSpeedOptions = {}): Promise<FakeWaveSpeed> {
    const fake = new FakeWaveSpeed(opts);
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The next API call answers this instead (auth is still checked first). */
  failNext(status: number, body?: unknown, headers?: Record<string, string>): void {
    this.injected.push({ status, body, headers });
  }

  /** The next API call never answers. */
  hangNext(): void {
    this.injected.push({ status: 0, hang: true });
  }

  /** The next submitted prediction follows this plan instead of created → processing → completed. */
  planNextJob(plan: JobPlan): void {
    this.plans.push(plan);
  }

  outputUrl(id: string): string {
    return `${this.url}/outputs/${id}.png`;
  }

  /** Sends the prediction's webhook as WaveSpeed would, with overrides for forging tests. */
  async deliverWebhook(
    id: string,
    opts: {
      timestamp?: number;
      secret?: string;
      webhookId?: string;
      /** Send this `webhook-signature` instead of the real one. */
      signature?: string;
      /** Sign one body and send another. */
      tamper?: (body: string) => string;
      omitHeader?: "webhook-id" | "webhook-timestamp" | "webhook-signature";
    } = {},
  ): Promise<number> {
    const job = this.jobs.get(id);
    if (!job?.webhook) throw new Error(`no webhook registered for ${id}`);
    job.step = job.plan.statuses.length - 1;
    const body = JSON.stringify(this.prediction(job));
    const webhookId = opts.webhookId ?? randomBytes(12).toString("hex");
    const timestamp = String(opts.timestamp ?? Math.floor(Date.now() / 1000));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "webhook-id": webhookId,
      "webhook-timestamp": timestamp,
      "webhook-signature":
        opts.signature ??
        FakeWaveSpeed.sign(opts.secret ?? this.webhookSecret, webhookId, timestamp, body),
    };
    if (opts.omitHeader) delete headers[opts.omitHeader];
    const res = await fetch(job.webhook, {
      method: "POST",
      headers,
      body: opts.tamper ? opts.tamper(body) : body,
    });
    await res.arrayBuffer();
    return res.status;
  }

  static sign(secret: string, id: string, timestamp: string, body: string): string {
    const key = Buffer.from(secret.replace(/^whsec_/, ""), "utf8");
    const hex = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("hex");
    return `v3,${hex}`;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  reset(): void {
    this.requests.length = 0;
    this.injected.length = 0;
    this.plans.length = 0;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve, reject) => this.server.close((e) => (e ? reject(e) : resolve())));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", this.url);
    let body: unknown = undefined;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }

    if (req.method === "GET" && url.pathname.startsWith("/outputs/")) {
      const id = url.pathname.slice("/outputs/".length).replace(/\.png$/, "");
      if (!this.jobs.has(id)) return this.send(res, 404, { code: 404, message: "not found" });
      res.writeHead(200, { "content-type": "image/png" }).end(this.png);
      return;
    }

    this.requests.push({
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body,
    });

    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return this.send(res, 401, { code: 401, message: "Unauthorized: invalid API key" });
    }
    const injected = this.injected.shift();
    if (injected?.hang) return; // The client's deadline ends it.
    if (injected) return this.send(res, injected.status, injected.body, injected.headers);

    const path = url.pathname;
    if (req.method === "POST" && path === "/api/v3/predictions/delete") {
      const ids = (body as { ids?: string[] })?.ids ?? [];
      const deleted = ids.filter((id) => this.jobs.delete(id)).length;
      return this.send(res, 200, {
        code: 200,
        message: "success",
        data: { deleted_count: deleted },
      });
    }
    const result = /^\/api\/v3\/predictions\/([^/]+)\/result$/.exec(path);
    if (req.method === "GET" && result) {
      const job = this.jobs.get(decodeURIComponent(result[1]!));
      if (!job) return this.send(res, 404, { code: 404, message: "prediction not found" });
      const data = this.prediction(job);
      job.step = Math.min(job.step + 1, job.plan.statuses.length - 1);
      return this.send(res, 200, { code: 200, message: "success", data });
    }
    if (req.method === "POST" && path.startsWith("/api/v3/")) {
      const model = decodeURIComponent(path.slice("/api/v3/".length));
      if (!this.models.has(model)) {
        return this.send(res, 404, { code: 404, message: `model ${model} not found` });
      }
      const input = (body ?? {}) as Record<string, unknown>;
      if (typeof input.prompt !== "string" || !input.prompt) {
        return this.send(res, 400, { code: 400, message: "prompt is required" });
      }
      const job: FakeJob = {
        id: randomBytes(16).toString("hex"),
        model,
        input,
        webhook: url.searchParams.get("webhook") ?? undefined,
        plan: this.plans.shift() ?? DEFAULT_PLAN,
        step: 0,
      };
      this.jobs.set(job.id, job);
      const data = { ...this.prediction(job), status: "created", outputs: [] };
      return this.send(res, 200, { code: 200, message: "success", data });
    }
    return this.send(res, 404, { code: 404, message: "no such route" });
  }

  private prediction(job: FakeJob) {
    const status = job.plan.statuses[job.step]!;
    const completed = status === "completed";
    return {
      id: job.id,
      model: job.model,
      input: job.input,
      outputs: completed ? [this.outputUrl(job.id)] : [],
      urls: { get: `${this.url}/api/v3/predictions/${job.id}/result` },
      has_nsfw_contents: completed ? [job.plan.nsfw === true] : [],
      status,
      created_at: new Date(0).toISOString(),
      code: status === "failed" ? (job.plan.code ?? 5000) : 0,
      error: status === "failed" ? (job.plan.error ?? "internal error") : "",
      timings: { inference: completed ? 1234 : 0 },
    };
  }

  private send(
    res: http.ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ): void {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(body === undefined ? "" : JSON.stringify(body));
  }
}
