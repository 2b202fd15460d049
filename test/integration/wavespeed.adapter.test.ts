import { createHmac } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { PNG } from "pngjs";
import { deferred, type Deferred } from "../../src/common/deferred";
import {
  ProviderError,
  WebhookVerificationError,
  type ProviderJobState,
  type ProviderRequest,
  type WebhookRequest,
} from "../../src/providers";
import { WaveSpeedAdapter } from "../../src/providers/wavespeed";
import { FakeWaveSpeed } from "../helpers/fake-wavespeed";

const API_KEY = "ws-live-key";
const SECRET = "whsec_c2VjcmV0LW5vdC1iYXNlNjQtZGVjb2RlZA";

const request: ProviderRequest = {
  generationId: "gen-1",
  attempt: 1,
  model: "wavespeed-ai/flux-dev",
  mediaType: "IMAGE",
  prompt: "a lighthouse at dusk",
  seed: 42,
};

/** Receives webhooks over real HTTP and hands each one over exactly as it arrived. */
async function startReceiver() {
  const waiting: Deferred<WebhookRequest>[] = [];
  const received: WebhookRequest[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v[0] : v;
    const hook = { headers, rawBody: Buffer.concat(chunks) };
    const next = waiting.shift();
    if (next) next.resolve(hook);
    else received.push(hook);
    res.writeHead(204).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/wavespeed`,
    next(): Promise<WebhookRequest> {
      const ready = received.shift();
      if (ready) return Promise.resolve(ready);
      const d = deferred<WebhookRequest>();
      waiting.push(d);
      return d.promise;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A URL nothing listens on: a port just released by the OS. */
async function refusedUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

function succeeded(state: ProviderJobState) {
  if (state.status !== "succeeded") throw new Error(`expected success, got ${state.status}`);
  return state;
}

function failed(state: ProviderJobState) {
  if (state.status !== "failed") throw new Error(`expected failure, got ${state.status}`);
  return state.error;
}

describe("WaveSpeedAI adapter over HTTP", () => {
  let fake: FakeWaveSpeed;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let adapter: WaveSpeedAdapter;

  beforeAll(async () => {
    fake = await FakeWaveSpeed.start({ apiKey: API_KEY, webhookSecret: SECRET });
    receiver = await startReceiver();
    adapter = new WaveSpeedAdapter({ apiKey: API_KEY, baseUrl: fake.url, webhookSecret: SECRET });
  });

  afterAll(async () => {
    await fake.close();
    await receiver.close();
  });

  beforeEach(() => fake.reset());

  describe("submit", () => {
    it("posts the inputs to the model path with bearer auth and returns the prediction id", async () => {
      const result = await adapter.submit({
        ...request,
        negativePrompt: "blurry",
        width: 1280,
        height: 720,
      });

      expect(result.providerJobId).toMatch(/^[0-9a-f]{32}$/);
      expect(result.pollAfterMs).toBe(1000);
      expect(result.state).toBeUndefined();
      const sent = fake.requests[0]!;
      expect(sent.method).toBe("POST");
      expect(sent.path).toBe("/api/v3/wavespeed-ai/flux-dev");
      expect(sent.headers.authorization).toBe(`Bearer ${API_KEY}`);
      expect(sent.headers["content-type"]).toBe("application/json");
      expect(sent.query.has("webhook")).toBe(false);
      expect(sent.body).toEqual({
        prompt: "a lighthouse at dusk",
        negative_prompt: "blurry",
        seed: 42,
        size: "1280*720",
      });
    });

    it("hands over a prediction that was already finished in the submit answer", async () => {
      const url = "https://cdn.example/outputs/abc.mp4";
      fake.failNext(200, {
        code: 200,
        message: "success",
        data: { id: "abc", status: "completed", outputs: [url], has_nsfw_contents: [false] },
      });

      const result = await adapter.submit(request);

      expect(result.providerJobId).toBe("abc");
      expect(result.state).toEqual({
        status: "succeeded",
        outputs: [{ url, contentType: "video/mp4" }],
      });
    });

    it("sends the video duration and keeps nested model paths", async () => {
      await adapter.submit({
        ...request,
        model: "wavespeed-ai/wan-2.1/t2v-480p",
        mediaType: "VIDEO",
        width: 832,
        height: 480,
        durationSeconds: 5,
      });

      expect(fake.requests[0]!.path).toBe("/api/v3/wavespeed-ai/wan-2.1/t2v-480p");
      expect(fake.requests[0]!.body).toMatchObject({ size: "832*480", duration: 5 });
    });

    it("asks for a webhook with ?webhook= when a webhook URL is given", async () => {
      await adapter.submit({ ...request, webhookUrl: `${receiver.url}?g=gen-1` });

      expect(fake.requests[0]!.query.get("webhook")).toBe(`${receiver.url}?g=gen-1`);
    });

    it("does not ask for webhooks it could not verify (no secret configured)", async () => {
      const unsigned = new WaveSpeedAdapter({ apiKey: API_KEY, baseUrl: fake.url });

      await unsigned.submit({ ...request, webhookUrl: receiver.url });

      expect(unsigned.supportsWebhooks).toBe(false);
      expect(adapter.supportsWebhooks).toBe(true);
      expect(fake.requests[0]!.query.has("webhook")).toBe(false);
    });
  });

  describe("status", () => {
    it("maps created, processing and completed, with the output URLs served", async () => {
      const { providerJobId } = await adapter.submit(request);

      expect(await adapter.getStatus(providerJobId)).toEqual({
        status: "queued",
        pollAfterMs: 1000,
      });
      expect(await adapter.getStatus(providerJobId)).toEqual({
        status: "processing",
        pollAfterMs: 1000,
      });
      const done = succeeded(await adapter.getStatus(providerJobId));
      expect(done.outputs).toEqual([
        { url: fake.outputUrl(providerJobId), contentType: "image/png" },
      ]);
      expect(done.costUsd).toBeUndefined();
      const poll = fake.requests.find((r) => r.method === "GET")!;
      expect(poll.path).toBe(`/api/v3/predictions/${providerJobId}/result`);
      expect(poll.headers.authorization).toBe(`Bearer ${API_KEY}`);

      const file = await fetch(done.outputs[0]!.url!);
      expect(file.headers.get("content-type")).toBe("image/png");
      expect(PNG.sync.read(Buffer.from(await file.arrayBuffer())).width).toBe(8);
    });

    it("keeps reporting processing for a job that never ends", async () => {
      fake.planNextJob({ statuses: ["processing"] });
      const { providerJobId } = await adapter.submit(request);

      const states = [];
      for (let i = 0; i < 5; i++) states.push((await adapter.getStatus(providerJobId)).status);

      expect(states).toEqual(Array(5).fill("processing"));
    });

    it.each([
      [1401, "Invalid parameter: size", "INVALID_INPUT", false],
      [1402, "Failed to download image", "INVALID_INPUT", false],
      [1200, "The content contains sensitive information.", "CONTENT_REFUSED", false],
      [5000, "internal error", "PROVIDER_ERROR", true],
      [5003, "service unavailable", "PROVIDER_ERROR", true],
      [5004, "timed out", "PROVIDER_TIMEOUT", true],
    ])("maps a failed task with code %i (%s) to %s", async (code, error, ourCode, retryable) => {
      fake.planNextJob({ statuses: ["failed"], code, error });
      const { providerJobId } = await adapter.submit(request);

      const err = failed(await adapter.getStatus(providerJobId));

      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ code: ourCode, retryable });
      expect(err.message).toContain(error);
    });

    it("refuses an output flagged NSFW, without retrying", async () => {
      fake.planNextJob({ statuses: ["completed"], nsfw: true });
      const { providerJobId } = await adapter.submit(request);

      const err = failed(await adapter.getStatus(providerJobId));

      expect(err).toMatchObject({ code: "CONTENT_REFUSED", retryable: false });
    });

    it("reports a prediction the provider no longer knows as not found, retryable", async () => {
      expect.assertions(1);
      await expect(adapter.getStatus("0123456789abcdef")).rejects.toMatchObject({
        code: "PROVIDER_JOB_NOT_FOUND",
        retryable: true,
      });
    });
  });

  describe("errors", () => {
    it.each([
      [401, { code: 401, message: "Unauthorized" }, {}, "PROVIDER_AUTH", false, undefined],
      [404, { code: 404, message: "model not found" }, {}, "MODEL_NOT_FOUND", false, undefined],
      [422, { code: 422, message: "size out of range" }, {}, "INVALID_INPUT", false, undefined],
      [
        429,
        { code: 429, message: "slow down" },
        { "retry-after": "7" },
        "RATE_LIMITED",
        true,
        7000,
      ],
      [500, { code: 500, message: "boom" }, {}, "PROVIDER_ERROR", true, undefined],
    ])("maps HTTP %i on submit", async (status, body, headers, code, retryable, retryAfterMs) => {
      expect.assertions(2);
      fake.failNext(status, body, headers);

      const err = await adapter.submit(request).catch((e: unknown) => e);

      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ code, retryable, retryAfterMs });
    });

    it("refuses a wrong API key as an authentication error", async () => {
      expect.assertions(1);
      const wrongKey = new WaveSpeedAdapter({ apiKey: "nope", baseUrl: fake.url });

      await expect(wrongKey.submit(request)).rejects.toMatchObject({
        code: "PROVIDER_AUTH",
        retryable: false,
      });
    });

    it("maps an unknown model to MODEL_NOT_FOUND", async () => {
      expect.assertions(1);
      await expect(
        adapter.submit({ ...request, model: "wavespeed-ai/no-such-model" }),
      ).rejects.toMatchObject({ code: "MODEL_NOT_FOUND", retryable: false });
    });

    it("treats an envelope code other than 200 as an error even with HTTP 200", async () => {
      expect.assertions(2);
      fake.failNext(200, { code: 401, message: "invalid token", data: null });
      await expect(adapter.submit(request)).rejects.toMatchObject({
        code: "PROVIDER_AUTH",
        message: expect.stringContaining("invalid token"),
      });

      fake.failNext(200, { code: 1401, message: "Invalid parameter: seed" });
      await expect(adapter.submit(request)).rejects.toMatchObject({
        code: "INVALID_INPUT",
        retryable: false,
      });
    });

    it("treats an answer without a prediction id as a retryable provider error", async () => {
      expect.assertions(1);
      fake.failNext(200, { code: 200, message: "success", data: {} });

      await expect(adapter.submit(request)).rejects.toMatchObject({
        code: "PROVIDER_ERROR",
        retryable: true,
      });
    });

    it("maps a refused connection to a retryable provider error", async () => {
      expect.assertions(1);
      const down = new WaveSpeedAdapter({ apiKey: API_KEY, baseUrl: await refusedUrl() });

      await expect(down.submit(request)).rejects.toMatchObject({
        code: "PROVIDER_ERROR",
        retryable: true,
      });
    });

    it("maps a call past its deadline to a retryable timeout", async () => {
      expect.assertions(1);
      const impatient = new WaveSpeedAdapter({
        apiKey: API_KEY,
        baseUrl: fake.url,
        timeoutMs: 100,
      });
      fake.hangNext();

      await expect(impatient.getStatus("anything")).rejects.toMatchObject({
        code: "PROVIDER_TIMEOUT",
        retryable: true,
      });
    });
  });

  describe("cancel", () => {
    it("deletes the prediction through the documented delete call", async () => {
      const { providerJobId } = await adapter.submit(request);

      await adapter.cancel(providerJobId);

      const sent = fake.requests.at(-1)!;
      expect(sent.method).toBe("POST");
      expect(sent.path).toBe("/api/v3/predictions/delete");
      expect(sent.body).toEqual({ ids: [providerJobId] });
      expect(fake.has(providerJobId)).toBe(false);
      // Repeating it is harmless: unknown ids are ignored.
      await expect(adapter.cancel(providerJobId)).resolves.toBeUndefined();
    });
  });

  describe("webhooks", () => {
    const T = 1_800_000_000;
    const at = (offsetSeconds: number) => new Date((T + offsetSeconds) * 1000);

    async function deliver(opts: Parameters<FakeWaveSpeed["deliverWebhook"]>[1] = {}) {
      const { providerJobId } = await adapter.submit({ ...request, webhookUrl: receiver.url });
      const status = await fake.deliverWebhook(providerJobId, { timestamp: T, ...opts });
      expect(status).toBe(204);
      return { providerJobId, hook: await receiver.next() };
    }

    it("accepts a signed delivery and reads the finished prediction from it", async () => {
      expect.assertions(3);
      const { providerJobId, hook } = await deliver({ webhookId: "wh_0001" });

      const event = await adapter.parseWebhook(hook, at(10));

      expect(event).toEqual({
        deliveryId: "wh_0001",
        providerJobId,
        state: {
          status: "succeeded",
          outputs: [{ url: fake.outputUrl(providerJobId), contentType: "image/png" }],
        },
      });
      expect(hook.headers["webhook-signature"]).toMatch(/^v3,[0-9a-f]{64}$/);
    });

    it("reads a failed prediction from a delivery", async () => {
      expect.assertions(2);
      fake.planNextJob({ statuses: ["failed"], code: 1200, error: "sensitive content" });
      const { hook } = await deliver();

      const event = await adapter.parseWebhook(hook, at(0));

      expect(failed(event.state)).toMatchObject({ code: "CONTENT_REFUSED", retryable: false });
    });

    it("accepts a delivery exactly at the 300 s tolerance, both ways", async () => {
      expect.assertions(3);
      const { hook } = await deliver();

      await expect(adapter.parseWebhook(hook, at(300))).resolves.toBeDefined();
      await expect(adapter.parseWebhook(hook, at(-300))).resolves.toBeDefined();
    });

    it.each<[string, Parameters<FakeWaveSpeed["deliverWebhook"]>[1], number, RegExp]>([
      ["a forged signature", { signature: `v3,${"ab".repeat(32)}` }, 0, /does not match/],
      ["a signature of another version", { signature: `v1,${"ab".repeat(32)}` }, 0, /not match/],
      ["a signature made with another secret", { secret: "whsec_other" }, 0, /does not match/],
      ["a stale timestamp", {}, 301, /too old/],
      ["a timestamp in the future", {}, -301, /in the future/],
      ["a missing webhook-id", { omitHeader: "webhook-id" }, 0, /required/],
      ["a missing webhook-timestamp", { omitHeader: "webhook-timestamp" }, 0, /required/],
      ["a missing webhook-signature", { omitHeader: "webhook-signature" }, 0, /required/],
      [
        "a tampered body",
        { tamper: (b) => b.replace('"completed"', '"failed"') },
        0,
        /does not match/,
      ],
    ])("refuses %s", async (_label, opts, skewSeconds, reason) => {
      expect.assertions(3);
      const { hook } = await deliver(opts);

      const err = await adapter.parseWebhook(hook, at(skewSeconds)).catch((e: unknown) => e);

      expect(err).toBeInstanceOf(WebhookVerificationError);
      expect((err as Error).message).toMatch(reason);
    });

    it("refuses a signature keyed the Standard Webhooks way (base64-decoded secret)", async () => {
      expect.assertions(3);
      const { providerJobId, hook: first } = await deliver({ webhookId: "wh_b64" });
      const body = first.rawBody.toString("utf8");
      const decodedKey = Buffer.from(SECRET.slice("whsec_".length), "base64");
      const hex = createHmac("sha256", decodedKey).update(`wh_b64.${T}.${body}`).digest("hex");
      await expect(adapter.parseWebhook(first, at(0))).resolves.toBeDefined();

      await fake.deliverWebhook(providerJobId, {
        timestamp: T,
        webhookId: "wh_b64",
        signature: `v3,${hex}`,
      });

      await expect(adapter.parseWebhook(await receiver.next(), at(0))).rejects.toBeInstanceOf(
        WebhookVerificationError,
      );
    });

    it("refuses every delivery when no secret is configured", async () => {
      expect.assertions(2);
      const { hook } = await deliver();
      const unsigned = new WaveSpeedAdapter({ apiKey: API_KEY, baseUrl: fake.url });

      await expect(unsigned.parseWebhook(hook, at(0))).rejects.toThrow(/no webhook secret/);
    });
  });
});
