import { generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ProviderError,
  ProviderErrorCode,
  WebhookVerificationError,
  type ProviderJobState,
  type ProviderRequest,
  type WebhookRequest,
} from "../../src/providers";
import { FalAdapter, type FalOptions } from "../../src/providers/fal";
import { FakeFal } from "../helpers/fake-fal";

/** Receives webhooks over real HTTP, keeping the raw body and headers as they arrived. */
async function startReceiver() {
  const received: WebhookRequest[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(req.headers))
      headers[name] = Array.isArray(value) ? value.join(", ") : value;
    received.push({ headers, rawBody: Buffer.concat(chunks) });
    res.writeHead(200).end("ok");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/fal?source=test`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The error a promise rejects with (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

function failure(state: ProviderJobState): ProviderError {
  if (state.status !== "failed") throw new Error(`expected failed, got ${state.status}`);
  return state.error;
}

const imageRequest: ProviderRequest = {
  generationId: "gen-1",
  attempt: 1,
  model: "fal-ai/flux/schnell",
  mediaType: "IMAGE",
  prompt: "a lighthouse at dusk",
  seed: 7,
  width: 768,
  height: 512,
};

let fake: FakeFal;
let receiver: Awaited<ReturnType<typeof startReceiver>>;

beforeAll(async () => {
  fake = await FakeFal.start();
  receiver = await startReceiver();
});

afterAll(async () => {
  await fake.close();
  await receiver.close();
});

function adapter(opts: Partial<FalOptions> = {}): FalAdapter {
  return new FalAdapter({
    apiKey: fake.apiKey,
    baseUrl: fake.url,
    jwksUrl: fake.jwksUrl,
    timeoutMs: 5_000,
    ...opts,
  });
}

async function submitted(req: Partial<ProviderRequest> = {}, fal = adapter()) {
  const { providerJobId } = await fal.submit({ ...imageRequest, ...req });
  return { fal, providerJobId, requestId: FalAdapter.jobKey(providerJobId) };
}

const lastQueueRequest = () => fake.queueRequests().at(-1)!;

describe("fal adapter: submit", () => {
  it("posts the inputs to the model path, subpath included, with the API key", async () => {
    const { providerJobId, requestId } = await submitted();
    const sent = lastQueueRequest();
    expect(sent.method).toBe("POST");
    expect(sent.path).toBe("/fal-ai/flux/schnell");
    expect(sent.headers.authorization).toBe(`Key ${fake.apiKey}`);
    expect(sent.query.has("fal_webhook")).toBe(false);
    expect(sent.body).toEqual({
      prompt: "a lighthouse at dusk",
      seed: 7,
      image_size: { width: 768, height: 512 },
    });
    // The job id names the app without the subpath: status and cancel live there.
    expect(providerJobId).toBe(`${requestId}@fal-ai/flux`);
  });

  it("asks for a webhook only when given one, and sends duration and negative prompt", async () => {
    await submitted({
      model: "fal-ai/kling-video/v2/master/text-to-video",
      mediaType: "VIDEO",
      negativePrompt: "blur",
      durationSeconds: 5,
      width: undefined,
      height: undefined,
      webhookUrl: receiver.url,
    });
    const sent = lastQueueRequest();
    expect(sent.path).toBe("/fal-ai/kling-video/v2/master/text-to-video");
    expect(sent.query.get("fal_webhook")).toBe(receiver.url);
    expect(sent.body).toEqual({
      prompt: "a lighthouse at dusk",
      seed: 7,
      negative_prompt: "blur",
      duration: 5,
    });
  });

  it("keeps a workflow's namespace in the app path", async () => {
    const { fal, providerJobId, requestId } = await submitted({
      model: "workflows/acme/pipeline/run",
    });
    expect(providerJobId).toBe(`${requestId}@workflows/acme/pipeline`);
    expect(await fal.getStatus(providerJobId)).toMatchObject({ status: "queued" });
    expect(lastQueueRequest().path).toBe(`/workflows/acme/pipeline/requests/${requestId}/status`);
  });

  it("refuses a model id that is not owner/app without calling fal", async () => {
    const before = fake.requests.length;
    const err = await rejection(adapter().submit({ ...imageRequest, model: "flux" }));
    expect(err).toMatchObject({ code: ProviderErrorCode.ModelNotFound, retryable: false });
    expect(fake.requests.length).toBe(before);
  });

  it("fails at construction without an API key", () => {
    expect(() => new FalAdapter({ apiKey: " " })).toThrow(/API key is required/);
  });
});

describe("fal adapter: status and results", () => {
  it("follows a job from its queue position through log progress to image outputs", async () => {
    const { fal, providerJobId, requestId } = await submitted();
    fake.queue(requestId, 3);
    expect(await fal.getStatus(providerJobId)).toEqual({ status: "queued", queuePosition: 3 });
    expect(lastQueueRequest().path).toBe(`/fal-ai/flux/requests/${requestId}/status`);
    expect(lastQueueRequest().query.get("logs")).toBe("1");

    fake.progress(requestId, { logs: ["loading weights", " 40%|████      | 8/20 [00:01<00:02]"] });
    expect(await fal.getStatus(providerJobId)).toEqual({ status: "processing", progress: 0.4 });
    fake.progress(requestId, { logs: ["step 15/20 (75%)", "decoding latents"] });
    expect(await fal.getStatus(providerJobId)).toEqual({ status: "processing", progress: 0.75 });

    const url = fake.addFile(`${requestId}.png`, Buffer.from("png-bytes"), "image/png");
    await fake.complete(requestId, {
      images: [{ url, width: 768, height: 512, content_type: "image/png", file_size: 9 }],
      seed: 7,
      has_nsfw_concepts: [false],
    });
    expect(await fal.getStatus(providerJobId)).toEqual({
      status: "succeeded",
      outputs: [{ url, width: 768, height: 512, contentType: "image/png" }],
    });
    expect(lastQueueRequest().path).toBe(`/fal-ai/flux/requests/${requestId}`);
    const file = await fetch(url);
    expect(Buffer.from(await file.arrayBuffer()).toString()).toBe("png-bytes");
  });

  it("reports processing without progress when no log line has a percentage", async () => {
    const { fal, providerJobId, requestId } = await submitted();
    fake.progress(requestId, { logs: ["loading weights"] });
    expect(await fal.getStatus(providerJobId)).toEqual({ status: "processing" });
  });

  it("maps video and audio results to outputs", async () => {
    const video = await submitted({ model: "fal-ai/kling-video/v2", mediaType: "VIDEO" });
    await fake.complete(video.requestId, {
      video: { url: `${fake.url}/files/v.mp4`, content_type: "video/mp4" },
    });
    expect(await video.fal.getStatus(video.providerJobId)).toEqual({
      status: "succeeded",
      outputs: [{ url: `${fake.url}/files/v.mp4`, contentType: "video/mp4" }],
    });

    const audio = await submitted({ model: "fal-ai/stable-audio", mediaType: "AUDIO" });
    await fake.complete(audio.requestId, { audio_file: { url: `${fake.url}/files/a.wav` } });
    expect(await audio.fal.getStatus(audio.providerJobId)).toEqual({
      status: "succeeded",
      outputs: [{ url: `${fake.url}/files/a.wav` }],
    });
  });

  it("fails a 422 result as non-retryable invalid input, naming the field", async () => {
    const { fal, providerJobId, requestId } = await submitted();
    await fake.error(requestId, 422, {
      detail: [{ loc: ["body", "image_size"], msg: "too large", type: "image_too_large" }],
    });
    const err = failure(await fal.getStatus(providerJobId));
    expect(err).toMatchObject({ code: ProviderErrorCode.InvalidInput, retryable: false });
    expect(err.message).toContain("image_size: too large");
  });

  it("fails a content-policy refusal as CONTENT_REFUSED", async () => {
    const flagged = await submitted();
    await fake.error(flagged.requestId, 422, {
      detail: [
        {
          loc: ["body", "prompt"],
          msg: "The content was flagged by a content checker.",
          type: "content_policy_violation",
        },
      ],
    });
    expect(failure(await flagged.fal.getStatus(flagged.providerJobId))).toMatchObject({
      code: ProviderErrorCode.ContentRefused,
      retryable: false,
    });

    const blanked = await submitted();
    await fake.complete(blanked.requestId, {
      images: [{ url: `${fake.url}/files/black.png`, width: 8, height: 8 }],
      has_nsfw_concepts: [true],
    });
    expect(failure(await blanked.fal.getStatus(blanked.providerJobId))).toMatchObject({
      code: ProviderErrorCode.ContentRefused,
      retryable: false,
    });
  });

  it("fails a 500 result as retryable, and a request_timeout as a retryable timeout", async () => {
    const crashed = await submitted();
    await fake.error(
      crashed.requestId,
      500,
      { detail: "Runner crashed", error_type: "runner_server_error" },
      { "x-fal-error-type": "runner_server_error" },
    );
    const err = failure(await crashed.fal.getStatus(crashed.providerJobId));
    expect(err).toMatchObject({ code: ProviderErrorCode.ProviderError, retryable: true });
    expect(err.message).toContain("runner_server_error");

    const slow = await submitted();
    await fake.error(
      slow.requestId,
      504,
      { detail: "Request timed out", error_type: "request_timeout" },
      { "x-fal-error-type": "request_timeout" },
    );
    expect(failure(await slow.fal.getStatus(slow.providerJobId))).toMatchObject({
      code: ProviderErrorCode.Timeout,
      retryable: true,
    });
  });

  it("keeps a never-ending job in progress and never asks for its result", async () => {
    const { fal, providerJobId, requestId } = await submitted({ model: "fal-ai/forever" });
    for (let i = 0; i < 3; i++)
      expect(await fal.getStatus(providerJobId)).toEqual({ status: "processing" });
    const resultFetches = fake
      .queueRequests()
      .filter((r) => r.path === `/fal-ai/forever/requests/${requestId}`);
    expect(resultFetches).toHaveLength(0);
  });

  it("answers PROVIDER_JOB_NOT_FOUND for an unknown request or a foreign id", async () => {
    const unknown = await rejection(adapter().getStatus(`${randomUUID()}@fal-ai/flux`));
    expect(unknown).toMatchObject({ code: ProviderErrorCode.JobNotFound, retryable: false });
    const foreign = await rejection(adapter().getStatus("sim_abc"));
    expect(foreign).toMatchObject({ code: ProviderErrorCode.JobNotFound, retryable: false });
  });

  it("throws (rather than failing the job) when the result fetch itself is rate limited", async () => {
    const { fal, providerJobId, requestId } = await submitted();
    await fake.complete(requestId, { images: [{ url: `${fake.url}/files/x.png` }] });
    fake.failNext({ status: 200, body: { status: "COMPLETED", request_id: requestId } });
    fake.failNext({ status: 429, body: { detail: "slow down" }, headers: { "retry-after": "3" } });
    const err = await rejection(fal.getStatus(providerJobId));
    expect(err).toMatchObject({ code: ProviderErrorCode.RateLimited, retryAfterMs: 3000 });
  });
});

describe("fal adapter: cancel", () => {
  it("accepts every answer fal gives: OK, CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND", async () => {
    const queued = await submitted();
    await expect(queued.fal.cancel(queued.providerJobId)).resolves.toBeUndefined();
    expect(lastQueueRequest()).toMatchObject({
      method: "PUT",
      path: `/fal-ai/flux/requests/${queued.requestId}/cancel`,
    });
    // Removed from the queue before running: its result reports the cancellation.
    expect(await queued.fal.getStatus(queued.providerJobId)).toEqual({ status: "canceled" });

    const running = await submitted();
    fake.progress(running.requestId);
    await expect(running.fal.cancel(running.providerJobId)).resolves.toBeUndefined();

    const done = await submitted();
    await fake.complete(done.requestId, { images: [{ url: `${fake.url}/files/d.png` }] });
    await expect(done.fal.cancel(done.providerJobId)).resolves.toBeUndefined();

    await expect(adapter().cancel(`${randomUUID()}@fal-ai/flux`)).resolves.toBeUndefined();
  });

  it("throws when fal refuses the credentials", async () => {
    const { providerJobId } = await submitted();
    const err = await rejection(adapter({ apiKey: "wrong" }).cancel(providerJobId));
    expect(err).toMatchObject({ code: ProviderErrorCode.Auth, retryable: false });
  });
});

describe("fal adapter: error statuses", () => {
  it("401: wrong key is a non-retryable auth error", async () => {
    const err = await rejection(adapter({ apiKey: "wrong" }).submit(imageRequest));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code: ProviderErrorCode.Auth, retryable: false });
  });

  it("404: an unknown app is a non-retryable missing model", async () => {
    const err = await rejection(adapter().submit({ ...imageRequest, model: "fal-ai/nope/dev" }));
    expect(err).toMatchObject({ code: ProviderErrorCode.ModelNotFound, retryable: false });
  });

  it("422: validation errors are non-retryable invalid input, naming the field", async () => {
    const err = await rejection(adapter().submit({ ...imageRequest, prompt: "" }));
    expect(err).toMatchObject({ code: ProviderErrorCode.InvalidInput, retryable: false });
    expect(err.message).toContain("prompt: field required");
  });

  it("429: rate limited, retryable after Retry-After", async () => {
    fake.failNext({
      status: 429,
      body: { detail: "Too many concurrent requests" },
      headers: { "retry-after": "7" },
    });
    const err = await rejection(adapter().submit(imageRequest));
    expect(err).toMatchObject({
      code: ProviderErrorCode.RateLimited,
      retryable: true,
      retryAfterMs: 7000,
    });
  });

  it("500: a server error is retryable", async () => {
    fake.failNext({ status: 500, body: { detail: "Internal Server Error" } });
    const err = await rejection(adapter().submit(imageRequest));
    expect(err).toMatchObject({ code: ProviderErrorCode.ProviderError, retryable: true });
  });

  it("503 runner_scheduling_failure: retryable, with fal's error type in the message", async () => {
    fake.failNext({
      status: 503,
      body: { detail: "No runner available", error_type: "runner_scheduling_failure" },
      headers: { "x-fal-error-type": "runner_scheduling_failure" },
    });
    const err = await rejection(adapter().submit(imageRequest));
    expect(err).toMatchObject({ code: ProviderErrorCode.ProviderError, retryable: true });
    expect(err.message).toContain("runner_scheduling_failure");
  });

  it("504 request_timeout on a status call: a retryable timeout", async () => {
    const { fal, providerJobId } = await submitted();
    fake.failNext({
      status: 504,
      body: { detail: "Request timed out", error_type: "request_timeout" },
      headers: { "x-fal-error-type": "request_timeout" },
    });
    const err = await rejection(fal.getStatus(providerJobId));
    expect(err).toMatchObject({ code: ProviderErrorCode.Timeout, retryable: true });
  });

  it("connection refused: retryable", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await rejection(
      adapter({ baseUrl: `http://127.0.0.1:${port}` }).submit(imageRequest),
    );
    expect(err).toMatchObject({ code: ProviderErrorCode.ProviderError, retryable: true });
  });

  it("no answer before the deadline: a retryable timeout", async () => {
    fake.hangNext();
    const err = await rejection(adapter({ timeoutMs: 150 }).submit(imageRequest));
    expect(err).toMatchObject({ code: ProviderErrorCode.Timeout, retryable: true });
  });
});

describe("fal adapter: webhooks", () => {
  async function deliveredOk() {
    const job = await submitted({ webhookUrl: receiver.url });
    const url = `${fake.url}/files/${job.requestId}.png`;
    await fake.complete(job.requestId, {
      images: [{ url, width: 768, height: 512, content_type: "image/png" }],
    });
    const delivery = receiver.received.at(-1)!;
    return { ...job, url, delivery };
  }

  it("parses a signed OK delivery into outputs, keyed by the request id", async () => {
    const { fal, providerJobId, requestId, url, delivery } = await deliveredOk();
    const event = await fal.parseWebhook(delivery);
    expect(event).toEqual({
      deliveryId: `${requestId}:${delivery.headers["x-fal-webhook-timestamp"]}`,
      providerJobId: requestId,
      state: {
        status: "succeeded",
        outputs: [{ url, width: 768, height: 512, contentType: "image/png" }],
      },
    });
    expect(event.providerJobId).toBe(FalAdapter.jobKey(providerJobId));
  });

  it("parses a signed ERROR delivery into the mapped failure", async () => {
    const { fal, requestId } = await submitted({ webhookUrl: receiver.url });
    await fake.error(requestId, 422, {
      detail: [{ loc: ["body", "prompt"], msg: "field required", type: "value_error.missing" }],
    });
    const event = await fal.parseWebhook(receiver.received.at(-1)!);
    expect(event.providerJobId).toBe(requestId);
    const err = failure(event.state);
    expect(err).toMatchObject({ code: ProviderErrorCode.InvalidInput, retryable: false });
    expect(err.message).toContain("Invalid status code: 422");
  });

  it("parses a server-error ERROR delivery as retryable", async () => {
    const { fal, requestId } = await submitted({ webhookUrl: receiver.url });
    await fake.error(requestId, 503, {
      detail: "No runner",
      error_type: "runner_scheduling_failure",
    });
    const event = await fal.parseWebhook(receiver.received.at(-1)!);
    expect(failure(event.state)).toMatchObject({ retryable: true });
  });

  it("asks for a poll when fal could not put the result in the webhook", async () => {
    const requestId = randomUUID();
    const body = Buffer.from(
      JSON.stringify({
        request_id: requestId,
        gateway_request_id: requestId,
        status: "OK",
        payload: null,
        payload_error: "Response payload is not JSON serializable",
      }),
    );
    const event = await adapter().parseWebhook({
      headers: fake.sign({ requestId, body }),
      rawBody: body,
    });
    expect(event.state).toEqual({ status: "processing", progress: 1, pollAfterMs: 0 });
  });

  it("refuses forged, foreign-key, stale, future, incomplete and tampered deliveries", async () => {
    const { fal, requestId, delivery } = await deliveredOk();
    const body = delivery.rawBody;
    const nowS = Math.floor(Date.now() / 1000);
    const other = generateKeyPairSync("ed25519").privateKey;
    const refuse = (req: WebhookRequest, now?: Date) =>
      expect(fal.parseWebhook(req, now)).rejects.toBeInstanceOf(WebhookVerificationError);

    const forged = {
      ...delivery.headers,
      "x-fal-webhook-signature": randomBytes(64).toString("hex"),
    };
    await refuse({ headers: forged, rawBody: body });
    await refuse({ headers: fake.sign({ requestId, body, privateKey: other }), rawBody: body });
    await refuse({
      headers: fake.sign({ requestId, body, timestampS: nowS - 301 }),
      rawBody: body,
    });
    await refuse({
      headers: fake.sign({ requestId, body, timestampS: nowS + 301 }),
      rawBody: body,
    });
    for (const name of Object.keys(delivery.headers).filter((h) =>
      h.startsWith("x-fal-webhook-"),
    )) {
      await refuse({ headers: { ...delivery.headers, [name]: undefined }, rawBody: body });
    }
    const tampered = Buffer.from(body.toString().replace("768", "769"));
    await refuse({ headers: delivery.headers, rawBody: tampered });
    // Validly signed, but the body speaks of another request than the signed header.
    await refuse({ headers: fake.sign({ requestId: randomUUID(), body }), rawBody: body });
    // Within tolerance at the edges.
    const edge = fake.sign({ requestId, body, timestampS: nowS - 299 });
    await expect(
      fal.parseWebhook({ headers: edge, rawBody: body }, new Date(nowS * 1000)),
    ).resolves.toMatchObject({
      providerJobId: requestId,
    });
  });

  it("fetches the JWKS once and serves later deliveries from the cache", async () => {
    const fal = adapter();
    const jwksFetches = () =>
      fake.requests.filter((r) => r.path === "/.well-known/jwks.json").length;
    const before = jwksFetches();
    const { requestId, delivery } = await deliveredOk();
    await fal.parseWebhook(delivery);
    const body = delivery.rawBody;
    await fal.parseWebhook({ headers: fake.sign({ requestId, body }), rawBody: body });
    // A forged delivery soon after a fetch does not make the adapter fetch again.
    const forged = { ...delivery.headers, "x-fal-webhook-signature": "ab".repeat(64) };
    await expect(fal.parseWebhook({ headers: forged, rawBody: body })).rejects.toBeInstanceOf(
      WebhookVerificationError,
    );
    expect(jwksFetches() - before).toBe(1);

    // After 24 hours the key set is fetched again.
    const later = Math.floor(Date.now() / 1000) + 24 * 3600 + 1;
    await fal.parseWebhook(
      { headers: fake.sign({ requestId, body, timestampS: later }), rawBody: body },
      new Date(later * 1000),
    );
    expect(jwksFetches() - before).toBe(2);
  });

  it("picks up a rotated key, refetching at most once per 5 minutes", async () => {
    const local = await FakeFal.start();
    try {
      const fal = new FalAdapter({
        apiKey: local.apiKey,
        baseUrl: local.url,
        jwksUrl: local.jwksUrl,
      });
      const jwksFetches = () =>
        local.requests.filter((r) => r.path === "/.well-known/jwks.json").length;
      const requestId = randomUUID();
      const body = Buffer.from(
        JSON.stringify({
          request_id: requestId,
          status: "OK",
          payload: { images: [{ url: "http://x/y.png" }] },
        }),
      );
      const t0 = Math.floor(Date.now() / 1000);
      const at = (s: number) => ({
        req: { headers: local.sign({ requestId, body, timestampS: t0 + s }), rawBody: body },
        now: new Date((t0 + s) * 1000),
      });

      const first = at(0);
      await fal.parseWebhook(first.req, first.now);
      local.rotateKey();
      const soon = at(60);
      await expect(fal.parseWebhook(soon.req, soon.now)).rejects.toBeInstanceOf(
        WebhookVerificationError,
      );
      expect(jwksFetches()).toBe(1);
      const later = at(6 * 60);
      await expect(fal.parseWebhook(later.req, later.now)).resolves.toMatchObject({
        providerJobId: requestId,
      });
      expect(jwksFetches()).toBe(2);
    } finally {
      await local.close();
    }
  });

  it("answers with a retryable provider error when the JWKS cannot be fetched", async () => {
    const { delivery } = await deliveredOk();
    const fal = adapter({ jwksUrl: `${fake.url}/files/missing-jwks.json` });
    const err = await rejection(fal.parseWebhook(delivery));
    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code: ProviderErrorCode.ProviderError, retryable: true });
  });
});
