import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { deferred, type Deferred } from "../../src/common/deferred";
import {
  simModelVersion,
  startSimServer,
  type SimServer,
} from "../../src/providers/simulated/sim-server";

const TOKEN = "sim-test-token";
const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Prediction {
  id: string;
  model: string;
  version: string;
  input: Record<string, unknown>;
  output: string[] | null;
  error: string | null;
  logs: string;
  status: string;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  urls: { get: string; cancel: string };
  metrics: { predict_time?: number; total_time?: number };
}

interface Delivery {
  headers: Record<string, string>;
  raw: Buffer;
  body: Prediction;
  answered: number;
}

/**
 * A local webhook receiver. Each test uses its own path; `until` resolves once a delivery on
 * that path matches, and `failNext` makes the next deliveries on a path answer 500.
 */
class Receiver {
  private server!: Server;
  url = "";
  private readonly deliveries = new Map<string, Delivery[]>();
  private readonly waiting: {
    path: string;
    test: (d: Delivery[]) => boolean;
    done: Deferred<Delivery[]>;
  }[] = [];
  private readonly failures = new Map<string, number>();

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const path = req.url ?? "/";
        const failuresLeft = this.failures.get(path) ?? 0;
        const answered = failuresLeft > 0 ? 500 : 204;
        if (failuresLeft > 0) this.failures.set(path, failuresLeft - 1);
        const raw = Buffer.concat(chunks);
        const list = this.deliveries.get(path) ?? [];
        list.push({
          headers: req.headers as Record<string, string>,
          raw,
          body: JSON.parse(raw.toString("utf8")) as Prediction,
          answered,
        });
        this.deliveries.set(path, list);
        res.writeHead(answered).end();
        for (const w of [...this.waiting]) {
          if (w.path === path && w.test(list)) {
            this.waiting.splice(this.waiting.indexOf(w), 1);
            w.done.resolve([...list]);
          }
        }
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  failNext(path: string, times: number): void {
    this.failures.set(path, times);
  }

  received(path: string): Delivery[] {
    return [...(this.deliveries.get(path) ?? [])];
  }

  until(path: string, test: (d: Delivery[]) => boolean): Promise<Delivery[]> {
    const list = this.deliveries.get(path) ?? [];
    if (test(list)) return Promise.resolve([...list]);
    const done = deferred<Delivery[]>();
    this.waiting.push({ path, test, done });
    return done.promise;
  }

  /** Resolves with every delivery once one carries a final status (and was accepted). */
  completed(path: string): Promise<Delivery[]> {
    return this.until(path, (list) =>
      list.some(
        (d) => d.answered < 300 && ["succeeded", "failed", "canceled"].includes(d.body.status),
      ),
    );
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

let sim: SimServer;
const receiver = new Receiver();

async function api(
  path: string,
  init: {
    method?: string;
    body?: unknown;
    token?: string | null;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = { ...init.headers };
  const token = init.token === undefined ? TOKEN : init.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${sim.url}${path}`, {
    method: init.method ?? (init.body === undefined ? "GET" : "POST"),
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    signal: init.signal,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

function create(
  model: string,
  input: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) {
  return api(`/v1/models/${model}/predictions`, { body: { input, ...extra } });
}

/** Polls GET (the state is time-driven) until a final status, keeping every answer seen. */
async function pollUntilDone(id: string): Promise<Prediction[]> {
  const seen: Prediction[] = [];
  for (;;) {
    const { status, body } = await api(`/v1/predictions/${id}`);
    expect(status).toBe(200);
    seen.push(body as Prediction);
    if (["succeeded", "failed", "canceled"].includes(body.status)) return seen;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function percentages(logs: string): number[] {
  return [...logs.matchAll(/(\d{1,3})%\|/g)].map((m) => Number(m[1]));
}

async function download(
  url: string,
): Promise<{ status: number; type: string | null; data: Buffer }> {
  const res = await fetch(url);
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    data: Buffer.from(await res.arrayBuffer()),
  };
}

function verify(d: Delivery): unknown {
  return new Webhook(SECRET).verify(d.raw, {
    "webhook-id": d.headers["webhook-id"]!,
    "webhook-timestamp": d.headers["webhook-timestamp"]!,
    "webhook-signature": d.headers["webhook-signature"]!,
  });
}

beforeAll(async () => {
  await receiver.start();
  sim = await startSimServer({
    port: 0,
    apiToken: TOKEN,
    webhookSecret: SECRET,
    latencyMs: 300,
    latencyJitter: 0,
    progressSteps: 5,
    webhookThrottleMs: 0,
    webhookRetryBaseMs: 20,
  });
});

afterAll(async () => {
  await sim?.close();
  await receiver.close();
});

afterEach(() => {
  sim.setBehaviour({ mode: "normal", latencyMs: 300, failureRate: 0 });
});

describe("sim-provider server", () => {
  it("runs an image prediction from starting through processing to a downloadable PNG", async () => {
    const created = await create("sim/image", {
      prompt: "a lighthouse at dusk [sim:latency=600]",
      seed: 7,
      width: 64,
      height: 48,
    });
    expect(created.status).toBe(201);
    const p = created.body as Prediction;
    expect(p).toMatchObject({
      model: "sim/image",
      version: simModelVersion("sim/image"),
      input: { prompt: "a lighthouse at dusk [sim:latency=600]", seed: 7, width: 64, height: 48 },
      output: null,
      error: null,
      logs: "",
      status: "starting",
      started_at: null,
      completed_at: null,
      urls: {
        get: `${sim.url}/v1/predictions/${p.id}`,
        cancel: `${sim.url}/v1/predictions/${p.id}/cancel`,
      },
      metrics: {},
    });
    expect(p.id).toMatch(/^[a-z0-9]{26}$/);
    expect(p.version).toMatch(/^[0-9a-f]{64}$/);
    expect(Number.isNaN(Date.parse(p.created_at))).toBe(false);

    const seen = await pollUntilDone(p.id);
    const order = ["starting", "processing", "succeeded"];
    const ranks = seen.map((s) => order.indexOf(s.status));
    expect(ranks.every((r, i) => r >= 0 && (i === 0 || r >= ranks[i - 1]!))).toBe(true);
    const processing = seen.filter((s) => s.status === "processing");
    expect(processing.length).toBeGreaterThan(0);
    const shown = processing.map((s) => percentages(s.logs).at(-1) ?? 0);
    expect(shown.every((v, i) => i === 0 || v >= shown[i - 1]!)).toBe(true);
    expect(new Set(shown).size).toBeGreaterThan(1);

    const done = seen.at(-1)!;
    expect(done.status).toBe("succeeded");
    expect(percentages(done.logs)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(done.logs).toContain("Using seed: 7\n");
    expect(done.logs).toContain(" 40%|████      | 2/5\n");
    expect(done.output).toEqual([`${sim.url}/v1/files/${p.id}/0.png`]);
    expect(done.metrics.predict_time).toBeGreaterThan(0);
    expect(Date.parse(done.completed_at!) - Date.parse(done.created_at)).toBe(600);
    expect(done.started_at).not.toBeNull();

    const file = await download(done.output![0]!);
    expect(file.status).toBe(200);
    expect(file.type).toBe("image/png");
    expect(file.data.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    expect(file.data.readUInt32BE(16)).toBe(64); // IHDR width
    expect(file.data.readUInt32BE(20)).toBe(48); // IHDR height
  });

  it("takes a version on POST /v1/predictions and holds the answer with Prefer: wait", async () => {
    for (const version of [
      simModelVersion("sim/audio"),
      "sim/audio",
      `sim/audio:${simModelVersion("sim/audio")}`,
    ]) {
      const { status, body } = await api("/v1/predictions", {
        body: { version, input: { prompt: "a short tune", seed: 3, duration: 0.5 } },
        headers: { prefer: "wait=5" },
      });
      expect(status).toBe(201);
      expect(body.status).toBe("succeeded");
      expect(body.model).toBe("sim/audio");
      const file = await download(body.output[0]);
      expect(file.type).toBe("audio/wav");
      expect(file.data.toString("latin1", 0, 4)).toBe("RIFF");
      expect(file.data.toString("latin1", 8, 12)).toBe("WAVE");
    }
  });

  it("serves video as an animated PNG", async () => {
    const { body } = await api("/v1/models/sim/video/predictions", {
      body: { input: { prompt: "waves", seed: 1, width: 32, height: 32, duration: 1 } },
      headers: { prefer: "wait" },
    });
    expect(body.status).toBe("succeeded");
    expect(body.output[0]).toMatch(/\/0\.apng$/);
    const file = await download(body.output[0]);
    expect(file.type).toBe("image/apng");
    expect(file.data.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    expect(file.data.includes(Buffer.from("acTL"))).toBe(true);
  });

  it("refuses requests without the token or with a wrong one, in Replicate's words", async () => {
    const unauthenticated = {
      title: "Unauthenticated",
      detail: "You did not pass a valid authentication token",
      status: 401,
    };
    for (const token of [null, "wrong-token"]) {
      const res = await api("/v1/models/sim/image/predictions", {
        body: { input: { prompt: "x" } },
        token,
      });
      expect(res.status).toBe(401);
      expect(res.body).toEqual(unauthenticated);
    }
    expect((await api("/admin/behaviour", { token: "wrong-token" })).status).toBe(401);
  });

  it("answers 404 for an unknown model or prediction and 422 for an unknown version", async () => {
    const model = await create("sim/nope", { prompt: "x" });
    expect(model.status).toBe(404);
    expect(model.body).toEqual({
      detail: "The requested resource could not be found.",
      status: 404,
    });
    expect((await api("/v1/predictions/doesnotexist")).status).toBe(404);
    const version = await api("/v1/predictions", {
      body: { version: "f".repeat(64), input: { prompt: "x" } },
    });
    expect(version.status).toBe(422);
    expect(version.body.title).toBe("Invalid version or not permitted");
  });

  it("rejects a missing or empty prompt with 422 and the invalid fields", async () => {
    const missing = await create("sim/image", { seed: 1 });
    expect(missing.status).toBe(422);
    expect(missing.body).toMatchObject({
      title: "Input validation failed",
      status: 422,
      detail: "- input: prompt is required\n",
      invalid_fields: [{ type: "required", field: "input", description: "prompt is required" }],
    });
    const empty = await create("sim/image", { prompt: "" });
    expect(empty.status).toBe(422);
    expect(empty.body.invalid_fields[0].field).toBe("input.prompt");
    const tooWide = await create("sim/image", { prompt: "x", width: 5000 });
    expect(tooWide.status).toBe(422);
    expect(tooWide.body.invalid_fields[0]).toMatchObject({
      field: "input.width",
      type: "number_lte",
    });
  });

  it("cancels a running prediction and keeps it canceled", async () => {
    const { body: p } = await create("sim/image", { prompt: "slow [sim:latency=10000]", seed: 1 });
    const canceled = await api(`/v1/predictions/${p.id}/cancel`, { method: "POST" });
    expect(canceled.status).toBe(200);
    expect(canceled.body.status).toBe("canceled");
    expect(canceled.body.completed_at).not.toBeNull();
    const again = await api(`/v1/predictions/${p.id}`);
    expect(again.body.status).toBe("canceled");
    expect(again.body.output).toBeNull();
    expect((await download(`${sim.url}/v1/files/${p.id}/0.png`)).status).toBe(404);
  });

  it("fails on [sim:fail] halfway through and honours [sim:latency=MS]", async () => {
    const failed = await create("sim/image", {
      prompt: "doomed [sim:fail] [sim:latency=80]",
      seed: 2,
    });
    const [done] = (await pollUntilDone(failed.body.id)).slice(-1);
    expect(done!.status).toBe("failed");
    expect(done!.error).toBe("simulated provider failure");
    expect(done!.output).toBeNull();
    expect(Date.parse(done!.completed_at!) - Date.parse(done!.created_at)).toBe(40);

    const quick = await api("/v1/models/sim/image/predictions", {
      body: { input: { prompt: "quick [sim:latency=50]", seed: 2, width: 8, height: 8 } },
      headers: { prefer: "wait=5" },
    });
    expect(quick.body.status).toBe("succeeded");
    expect(quick.body.metrics.total_time).toBe(0.05);

    const rejected = await api("/v1/models/sim/image/predictions", {
      body: { input: { prompt: "[sim:reject]", seed: 2 } },
      headers: { prefer: "wait=5" },
    });
    expect(rejected.body.status).toBe("failed");
    expect(rejected.body.error).toMatch(/flagged as sensitive.*E005/);
  });

  it("is deterministic for a prompt and seed: same course, same bytes", async () => {
    sim.setBehaviour({ latencyJitter: 0.5 });
    try {
      const run = async (seed: number) => {
        const { body } = await api("/v1/models/sim/image/predictions", {
          body: { input: { prompt: "same every time", seed, width: 32, height: 32 } },
          headers: { prefer: "wait=5" },
        });
        expect(body.status).toBe("succeeded");
        const file = await download(body.output[0]);
        return {
          took: Date.parse(body.completed_at) - Date.parse(body.created_at),
          data: file.data,
        };
      };
      const a = await run(11);
      const b = await run(11);
      const c = await run(12);
      expect(b.took).toBe(a.took);
      expect(b.data.equals(a.data)).toBe(true);
      expect(c.data.equals(a.data)).toBe(false);
    } finally {
      sim.setBehaviour({ latencyJitter: 0 });
    }
  });

  it("sends signed webhooks in order: start, logs with rising progress, output, completed", async () => {
    expect.hasAssertions();
    const path = "/hooks/all";
    const { body: p } = await create(
      "sim/image",
      { prompt: "hooked", seed: 5, width: 16, height: 16 },
      { webhook: `${receiver.url}${path}` },
    );
    const deliveries = await receiver.completed(path);
    for (const d of deliveries) expect(verify(d)).toMatchObject({ id: p.id });
    const events = deliveries.map((d) => d.body.status);
    expect(events[0]).toBe("starting");
    expect(events.at(-1)).toBe("succeeded");
    expect(events.slice(1, -1).every((s) => s === "processing")).toBe(true);
    const progress = deliveries.slice(1, -1).map((d) => percentages(d.body.logs).at(-1));
    expect(progress).toEqual([0, 20, 40, 60, 80, 100]);
    // The `output` event: processing, with the output already there.
    expect(deliveries.at(-2)!.body.output).toEqual(deliveries.at(-1)!.body.output);
    const ids = deliveries.map((d) => d.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("sends only the events in webhook_events_filter", async () => {
    expect.assertions(1);
    const path = "/hooks/filtered";
    await create(
      "sim/image",
      { prompt: "filtered", seed: 5, width: 16, height: 16 },
      { webhook: `${receiver.url}${path}`, webhook_events_filter: ["start", "completed"] },
    );
    const deliveries = await receiver.completed(path);
    expect(deliveries.map((d) => d.body.status)).toEqual(["starting", "succeeded"]);
  });

  it("retries a delivery the receiver failed, with the same webhook-id", async () => {
    expect.assertions(4);
    const path = "/hooks/retry";
    receiver.failNext(path, 1);
    await create(
      "sim/image",
      { prompt: "retried", seed: 5, width: 16, height: 16 },
      { webhook: `${receiver.url}${path}`, webhook_events_filter: ["completed"] },
    );
    const deliveries = await receiver.completed(path);
    expect(deliveries.map((d) => d.answered)).toEqual([500, 204]);
    expect(deliveries[1]!.headers["webhook-id"]).toBe(deliveries[0]!.headers["webhook-id"]);
    for (const d of deliveries) expect(verify(d)).toMatchObject({ status: "succeeded" });
  });

  it("sends a completed webhook for a cancel", async () => {
    expect.assertions(1);
    const path = "/hooks/cancel";
    const { body: p } = await create(
      "sim/image",
      { prompt: "to cancel [sim:latency=10000]", seed: 5 },
      { webhook: `${receiver.url}${path}`, webhook_events_filter: ["completed"] },
    );
    await api(`/v1/predictions/${p.id}/cancel`, { method: "POST" });
    const deliveries = await receiver.completed(path);
    expect(deliveries.map((d) => d.body.status)).toEqual(["canceled"]);
  });

  it("sends logs at most once per throttle window", async () => {
    expect.assertions(2);
    const throttled = await startSimServer({
      port: 0,
      apiToken: TOKEN,
      webhookSecret: SECRET,
      latencyMs: 300,
      latencyJitter: 0,
      webhookThrottleMs: 10_000,
    });
    try {
      const path = "/hooks/throttled";
      await fetch(`${throttled.url}/v1/models/sim/image/predictions`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({
          input: { prompt: "throttled", seed: 5, width: 16, height: 16 },
          webhook: `${receiver.url}${path}`,
        }),
      });
      const deliveries = await receiver.completed(path);
      // start, the first logs (0%), then nothing until completed: the window outlasts the run.
      expect(deliveries.map((d) => d.body.status)).toEqual(["starting", "processing", "succeeded"]);
      expect(percentages(deliveries[1]!.body.logs)).toEqual([0]);
    } finally {
      await throttled.close();
    }
  });

  it("switches behaviour at runtime: down, rate-limited, flaky, hang, then normal again", async () => {
    const createOnce = (signal?: AbortSignal) =>
      api("/v1/models/sim/image/predictions", {
        body: { input: { prompt: "x", seed: 1 } },
        signal,
      });

    const set = (b: Record<string, unknown>) => api("/admin/behaviour", { body: b });

    expect((await set({ mode: "down" })).body.mode).toBe("down");
    expect((await api("/admin/behaviour")).body.mode).toBe("down");
    expect((await createOnce()).status).toBe(503);
    expect((await api("/healthz", { token: null })).status).toBe(200);

    await set({ mode: "rate-limited", retryAfterSeconds: 7 });
    const limited = await createOnce();
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBe("7");
    expect(limited.body).toEqual({
      detail: "Request was throttled. Your rate limit resets in ~7s.",
    });

    await set({ mode: "flaky", flakyRate: 1 });
    expect((await createOnce()).status).toBe(500);

    await set({ mode: "hang" });
    await expect(createOnce(AbortSignal.timeout(200))).rejects.toMatchObject({
      name: "TimeoutError",
    });

    const invalid = await set({ mode: "sideways" });
    expect(invalid.status).toBe(422);
    expect(sim.behaviour().mode).toBe("hang");

    await set({ mode: "normal" });
    expect((await createOnce()).status).toBe(201);
  });

  it("hands out its webhook secret as Replicate does", async () => {
    const { body } = await api("/v1/webhooks/default/secret");
    expect(body).toEqual({ key: SECRET });
  });
});
