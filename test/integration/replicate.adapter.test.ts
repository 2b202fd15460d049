import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import {
  ProviderError,
  WebhookVerificationError,
  type ProviderJobState,
  type ProviderRequest,
} from "../../src/providers";
import { ReplicateAdapter } from "../../src/providers/replicate";
import {
  FAKE_OFFICIAL_MODEL,
  FAKE_VERSION_ID,
  FAKE_VERSIONED_MODEL,
  FakeReplicate,
  signWebhook,
  startWebhookReceiver,
  type ReceivedWebhook,
  type WebhookReceiver,
} from "../helpers/fake-replicate";

const request: ProviderRequest = {
  generationId: "gen_1",
  attempt: 1,
  model: FAKE_OFFICIAL_MODEL,
  mediaType: "IMAGE",
  prompt: "a lighthouse at dusk",
  seed: 1234,
};

let fake: FakeReplicate;
let receiver: WebhookReceiver;
let adapter: ReplicateAdapter;

beforeAll(async () => {
  [fake, receiver] = await Promise.all([FakeReplicate.start(), startWebhookReceiver()]);
  adapter = new ReplicateAdapter({
    apiToken: fake.token,
    baseUrl: fake.url,
    webhookSecret: fake.webhookSecret,
  });
});

afterAll(async () => {
  await fake.close();
  await receiver.close();
});

/** The ProviderError a call rejects with. */
async function providerError(call: Promise<unknown>): Promise<ProviderError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof ProviderError)) throw new Error(`expected a ProviderError, got ${err}`);
  return err;
}

async function webhookError(call: Promise<unknown>): Promise<WebhookVerificationError> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof WebhookVerificationError))
    throw new Error(`expected a WebhookVerificationError, got ${err}`);
  return err;
}

function lastRequest() {
  return fake.requests[fake.requests.length - 1]!;
}

describe("submit", () => {
  it("runs an official model through its models endpoint, with the token and no webhook", async () => {
    const { providerJobId, pollAfterMs, state } = await adapter.submit({
      ...request,
      negativePrompt: "blurry",
      width: 1024,
      height: 768,
      durationSeconds: 4,
    });

    const sent = lastRequest();
    expect(sent.method).toBe("POST");
    expect(sent.path).toBe(`/v1/models/${FAKE_OFFICIAL_MODEL}/predictions`);
    expect(sent.headers.authorization).toBe(`Bearer ${fake.token}`);
    expect(sent.headers.prefer).toBeUndefined();
    // An image has no duration, whatever the request carried.
    expect(sent.body).toEqual({
      input: {
        prompt: "a lighthouse at dusk",
        negative_prompt: "blurry",
        seed: 1234,
        width: 1024,
        height: 768,
      },
    });
    expect(providerJobId).toBe(fake.lastPredictionId());
    expect(pollAfterMs).toBeGreaterThan(0);
    expect(state).toBeUndefined();
  });

  it("pins a version through /predictions and sends a video's duration", async () => {
    await adapter.submit({
      ...request,
      model: FAKE_VERSIONED_MODEL,
      mediaType: "VIDEO",
      durationSeconds: 5,
    });

    const sent = lastRequest();
    expect(sent.path).toBe("/v1/predictions");
    expect(sent.body).toEqual({
      version: FAKE_VERSION_ID,
      input: { prompt: "a lighthouse at dusk", seed: 1234, duration: 5 },
    });
    expect(fake.prediction(fake.lastPredictionId())).toMatchObject({
      version: FAKE_VERSION_ID,
      model: "stability-ai/sdxl",
    });
  });

  it("asks for every webhook event only when given a webhook URL", async () => {
    await adapter.submit({ ...request, webhookUrl: receiver.url });

    expect(lastRequest().body).toMatchObject({
      webhook: receiver.url,
      webhook_events_filter: ["start", "output", "logs", "completed"],
    });
    await receiver.next(); // the "start" delivery, so it is not left for another test
  });

  it("returns the state too when the prediction is already finished at creation", async () => {
    fake.succeedNextCreate([fake.fileUrl("quick.png")]);

    const { state } = await adapter.submit(request);

    expect(state).toEqual({
      status: "succeeded",
      outputs: [{ url: fake.fileUrl("quick.png"), contentType: "image/png" }],
      costUsd: undefined,
    });
  });

  it("refuses a model id that is neither owner/name nor owner/name:version", async () => {
    const requestsBefore = fake.requests.length;

    const err = await providerError(adapter.submit({ ...request, model: "flux schnell" }));

    expect(err).toMatchObject({ code: "MODEL_NOT_FOUND", retryable: false });
    expect(fake.requests).toHaveLength(requestsBefore);
  });
});

describe("getStatus", () => {
  it("follows a prediction from starting through tqdm progress to its files", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    expect(await adapter.getStatus(id)).toMatchObject({ status: "queued" });

    await fake.advance(id, "processing", { logs: "Using seed: 1234\n" });
    expect(await adapter.getStatus(id)).toEqual({ status: "processing", pollAfterMs: 1000 });

    await fake.advance(id, "processing", {
      logs: "  0%|          | 0/4 [00:00<?, ?it/s]\r 45%|████▌     | 9/20 [00:01<00:01, 8.1it/s]\n",
    });
    expect(await adapter.getStatus(id)).toEqual({
      status: "processing",
      progress: 0.45,
      pollAfterMs: 1000,
    });

    await fake.succeed(id, [fake.fileUrl("out-0.png"), fake.fileUrl("out-1.webp")]);
    const state = await adapter.getStatus(id);
    expect(state).toEqual({
      status: "succeeded",
      outputs: [
        { url: fake.fileUrl("out-0.png"), contentType: "image/png" },
        { url: fake.fileUrl("out-1.webp"), contentType: "image/webp" },
      ],
      costUsd: undefined,
    });
    expect(lastRequest()).toMatchObject({ method: "GET", path: `/v1/predictions/${id}` });

    const file = await fetch((state as { outputs: { url: string }[] }).outputs[0]!.url);
    expect(file.headers.get("content-type")).toBe("image/png");
    expect(
      Buffer.from(await file.arrayBuffer())
        .subarray(1, 4)
        .toString(),
    ).toBe("PNG");
  });

  it.each([
    ["one URL", (f: FakeReplicate) => f.fileUrl("clip.mp4"), "video/mp4"],
    ["an object of URLs", (f: FakeReplicate) => ({ audio: f.fileUrl("song.mp3") }), "audio/mpeg"],
  ])("reads an output given as %s", async (_shape, output, contentType) => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.succeed(id, output(fake));

    const state = await adapter.getStatus(id);

    expect(state).toMatchObject({ status: "succeeded", outputs: [{ contentType }] });
  });

  it("fails retryably when a prediction succeeds with no file in its output", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.succeed(id, "just some text");

    const state = await adapter.getStatus(id);

    expect(state).toMatchObject({
      status: "failed",
      error: { code: "PROVIDER_ERROR", retryable: true },
    });
  });

  it("reports a model failure as a retryable provider error", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.fail(id, "CUDA out of memory");

    const state = await adapter.getStatus(id);

    expect(state.status).toBe("failed");
    const { error } = state as Extract<ProviderJobState, { status: "failed" }>;
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
    expect(error.message).toContain("CUDA out of memory");
  });

  it.each([
    "NSFW content detected. Try running it again, or try a different prompt.",
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)",
  ])("reports a safety refusal as content refused, not retryable: %s", async (message) => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.fail(id, message);

    const state = await adapter.getStatus(id);

    expect(state).toMatchObject({
      status: "failed",
      error: { code: "CONTENT_REFUSED", retryable: false },
    });
  });

  it("reports a prediction aborted before it started as canceled", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.abort(id);

    expect(await adapter.getStatus(id)).toEqual({ status: "canceled" });
  });

  it("keeps reporting processing for a job that never ends", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.neverEnd(id);

    const states: ProviderJobState[] = [];
    for (let i = 0; i < 5; i++) states.push(await adapter.getStatus(id));

    expect(states.map((s) => s.status)).toEqual(Array(5).fill("processing"));
    expect(fake.prediction(id).logs.split("still working").length).toBe(6);
  });

  it("says the job is not found for an unknown prediction id", async () => {
    const err = await providerError(adapter.getStatus("nosuchprediction"));

    expect(err).toMatchObject({ code: "PROVIDER_JOB_NOT_FOUND", retryable: false });
  });
});

describe("cancel", () => {
  it("cancels a running prediction, which then reads as canceled", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.advance(id, "processing");

    await adapter.cancel(id);

    expect(lastRequest()).toMatchObject({ method: "POST", path: `/v1/predictions/${id}/cancel` });
    expect(lastRequest().headers.authorization).toBe(`Bearer ${fake.token}`);
    expect(await adapter.getStatus(id)).toEqual({ status: "canceled" });
  });

  it("accepts canceling a finished or unknown prediction", async () => {
    const { providerJobId: id } = await adapter.submit(request);
    await fake.succeed(id, [fake.fileUrl("done.png")]);

    await expect(adapter.cancel(id)).resolves.toBeUndefined();
    await expect(adapter.cancel("nosuchprediction")).resolves.toBeUndefined();
    expect(fake.prediction(id).status).toBe("succeeded");
  });

  it("still reports a failure that is not about the prediction being finished", async () => {
    fake.failNext(500);

    const err = await providerError(adapter.cancel("whatever"));

    expect(err).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
  });
});

describe("HTTP errors", () => {
  it("maps a refused token to an auth error that is not retried", async () => {
    const wrongToken = new ReplicateAdapter({ apiToken: "r8_wrong", baseUrl: fake.url });

    const err = await providerError(wrongToken.submit(request));

    expect(err).toMatchObject({ code: "PROVIDER_AUTH", retryable: false });
    expect(err.message).toContain("You did not pass a valid authentication token");
  });

  it("maps an unknown official model to model not found", async () => {
    const err = await providerError(adapter.submit({ ...request, model: "acme/no-such-model" }));

    expect(err).toMatchObject({ code: "MODEL_NOT_FOUND", retryable: false });
  });

  it("maps an unknown version to model not found", async () => {
    const err = await providerError(
      adapter.submit({ ...request, model: `stability-ai/sdxl:${"0".repeat(64)}` }),
    );

    expect(err).toMatchObject({ code: "MODEL_NOT_FOUND", retryable: false });
  });

  it("maps Replicate's input validation failure to invalid input", async () => {
    const err = await providerError(adapter.submit({ ...request, prompt: "" }));

    expect(err).toMatchObject({ code: "INVALID_INPUT", retryable: false });
    expect(err.message).toContain("prompt is required");
  });

  it("honours Retry-After on a 429", async () => {
    fake.failNext(429, { retryAfter: "7" });

    const err = await providerError(adapter.submit(request));

    expect(err).toMatchObject({ code: "RATE_LIMITED", retryable: true, retryAfterMs: 7000 });
  });

  it("reads the reset hint in the body of a 429 without Retry-After", async () => {
    fake.failNext(429);

    const err = await providerError(adapter.getStatus("any"));

    expect(err).toMatchObject({ code: "RATE_LIMITED", retryable: true, retryAfterMs: 30_000 });
  });

  it("leaves the delay to the worker when a 429 gives no hint at all", async () => {
    fake.failNext(429, { body: { detail: "Request was throttled." } });

    const err = await providerError(adapter.getStatus("any"));

    expect(err).toMatchObject({ code: "RATE_LIMITED", retryable: true, retryAfterMs: undefined });
  });

  it("maps a 500 to a retryable provider error", async () => {
    fake.failNext(500);

    const err = await providerError(adapter.submit(request));

    expect(err).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
  });

  it("maps a refused connection to a retryable provider error", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const nowhere = new ReplicateAdapter({
      apiToken: "r8_x",
      baseUrl: `http://127.0.0.1:${port}/v1`,
    });

    const err = await providerError(nowhere.getStatus("any"));

    expect(err).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
  });

  it("gives up on a hanging request at its deadline, retryably", async () => {
    const impatient = new ReplicateAdapter({
      apiToken: fake.token,
      baseUrl: fake.url,
      timeoutMs: 50,
    });
    fake.hangNext();

    const err = await providerError(impatient.submit(request));

    expect(err).toMatchObject({ code: "PROVIDER_TIMEOUT", retryable: true });
  });
});

describe("webhooks", () => {
  /** A delivery with its body or headers changed. */
  function tampered(
    delivery: ReceivedWebhook,
    change: { headers?: Record<string, string | undefined>; rawBody?: Buffer },
  ): ReceivedWebhook {
    return {
      headers: { ...delivery.headers, ...change.headers },
      rawBody: change.rawBody ?? delivery.rawBody,
    };
  }

  let delivery: ReceivedWebhook;
  let predictionId: string;

  beforeAll(async () => {
    ({ providerJobId: predictionId } = await adapter.submit({
      ...request,
      webhookUrl: receiver.url,
    }));
    delivery = await receiver.next();
  });

  it("parses each signed delivery into the state getStatus would report", async () => {
    const start = await adapter.parseWebhook(delivery);
    expect(start).toEqual({
      deliveryId: delivery.headers["webhook-id"],
      providerJobId: predictionId,
      state: { status: "queued", pollAfterMs: 2000 },
    });
    expect(start.state).toEqual(await adapter.getStatus(predictionId));

    await fake.advance(predictionId, "processing", { logs: " 60%|██████    | 12/20\n" });
    const progress = await receiver.next();
    expect(await adapter.parseWebhook(progress)).toMatchObject({
      providerJobId: predictionId,
      state: { status: "processing", progress: 0.6 },
    });

    await fake.succeed(predictionId, [fake.fileUrl("hooked.png")]);
    const completed = await receiver.next();
    const event = await adapter.parseWebhook(completed);
    expect(event.state).toEqual(await adapter.getStatus(predictionId));
    expect(event.state).toMatchObject({ status: "succeeded" });

    const ids = [delivery, progress, completed].map((d) => d.headers["webhook-id"]);
    expect(new Set(ids).size).toBe(3);
    await fake.idle();
    expect(
      fake.deliveries
        .filter((d) => d.predictionId === predictionId)
        .map((d) => [d.event, d.status]),
    ).toEqual([
      ["start", 204],
      ["logs", 204],
      ["completed", 204],
    ]);
  });

  it("accepts a delivery signed with several keys when one of them matches", async () => {
    const signatures = `v1,${Buffer.alloc(32).toString("base64")} ${delivery.headers["webhook-signature"]}`;

    const event = await adapter.parseWebhook(
      tampered(delivery, { headers: { "webhook-signature": signatures } }),
    );

    expect(event.providerJobId).toBe(predictionId);
  });

  it("accepts a delivery within five minutes of the given clock", async () => {
    const sentAt = Number(delivery.headers["webhook-timestamp"]) * 1000;

    await expect(adapter.parseWebhook(delivery, new Date(sentAt + 299_000))).resolves.toBeDefined();
    await expect(adapter.parseWebhook(delivery, new Date(sentAt - 299_000))).resolves.toBeDefined();
  });

  it("refuses a forged signature", async () => {
    const forged = tampered(delivery, {
      rawBody: Buffer.from(delivery.rawBody.toString().replace('"starting"', '"succeeded"')),
    });

    const err = await webhookError(adapter.parseWebhook(forged));

    expect(err.message).toContain("no matching signature");
  });

  it("refuses a delivery signed with another secret", async () => {
    const other = new ReplicateAdapter({
      apiToken: fake.token,
      baseUrl: fake.url,
      webhookSecret: `whsec_${Buffer.from("another secret entirely").toString("base64")}`,
    });

    await webhookError(other.parseWebhook(delivery));
  });

  it("refuses a replay older than five minutes, even correctly signed", async () => {
    const body = delivery.rawBody.toString();
    const stale = signWebhook(body, {
      secret: fake.webhookSecret,
      timestamp: new Date(Date.now() - 310_000),
    });

    const err = await webhookError(
      adapter.parseWebhook({ headers: stale, rawBody: delivery.rawBody }),
    );
    expect(err.message).toContain("too old");

    const sentAt = Number(delivery.headers["webhook-timestamp"]) * 1000;
    await webhookError(adapter.parseWebhook(delivery, new Date(sentAt + 301_000)));
  });

  it("refuses a timestamp more than five minutes ahead", async () => {
    const ahead = signWebhook(delivery.rawBody, {
      secret: fake.webhookSecret,
      timestamp: new Date(Date.now() + 310_000),
    });

    const err = await webhookError(
      adapter.parseWebhook({ headers: ahead, rawBody: delivery.rawBody }),
    );
    expect(err.message).toContain("future");

    const sentAt = Number(delivery.headers["webhook-timestamp"]) * 1000;
    await webhookError(adapter.parseWebhook(delivery, new Date(sentAt - 301_000)));
  });

  it.each(["webhook-id", "webhook-timestamp", "webhook-signature"])(
    "refuses a delivery without its %s header",
    async (header) => {
      const err = await webhookError(
        adapter.parseWebhook(tampered(delivery, { headers: { [header]: undefined } })),
      );

      expect(err.message).toContain("missing");
    },
  );

  it.each([
    ["not JSON", "{ this is not json"],
    ["JSON without a prediction id", JSON.stringify({ status: "succeeded" })],
    ["a prediction with an unknown status", JSON.stringify({ id: "p1", status: "exploded" })],
  ])("refuses a correctly signed body that is %s", async (_what, body) => {
    const headers = signWebhook(body, { secret: fake.webhookSecret });

    const err = await webhookError(adapter.parseWebhook({ headers, rawBody: Buffer.from(body) }));

    expect(err.message).toContain("not a prediction");
  });

  it("refuses every delivery when no secret is configured", async () => {
    const unconfigured = new ReplicateAdapter({ apiToken: fake.token, baseUrl: fake.url });

    const err = await webhookError(unconfigured.parseWebhook(delivery));

    expect(err.message).toBe("replicate webhook secret not configured");
  });
});

describe("configuration", () => {
  it("fails at construction on a secret that is not a whsec_ key", () => {
    expect(
      () => new ReplicateAdapter({ apiToken: "r8_x", webhookSecret: "r8_pasted_the_token" }),
    ).toThrow(/whsec_/);
    expect(() => new ReplicateAdapter({ apiToken: "r8_x", webhookSecret: "whsec_!!!" })).toThrow(
      /not a valid whsec_ key/,
    );
  });

  it("serves another Replicate-style server under its own name", async () => {
    const mirror = new ReplicateAdapter({
      apiToken: "r8_wrong",
      baseUrl: fake.url,
      name: "mirror",
    });

    const err = await providerError(mirror.getStatus("any"));

    expect(mirror.name).toBe("mirror");
    expect(err.message).toMatch(/^mirror: HTTP 401/);
  });
});
