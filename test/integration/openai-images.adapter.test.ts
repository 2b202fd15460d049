import http from "node:http";
import type { AddressInfo } from "node:net";
import { PNG } from "pngjs";
import { ProviderError, type ProviderJobState, type ProviderRequest } from "../../src/providers";
import { OpenAIImagesAdapter } from "../../src/providers/openai";
import { FakeOpenAI } from "../helpers/fake-openai";

const API_KEY = "sk-live-key";

const request: ProviderRequest = {
  generationId: "4f1c2d9e-0000-4000-8000-000000000001",
  attempt: 2,
  model: "gpt-image-1",
  mediaType: "IMAGE",
  prompt: "a paper boat on a puddle",
  seed: 7,
};

/** A URL nothing listens on: a port just released by the OS. */
async function refusedUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}

function succeeded(state: ProviderJobState | undefined) {
  if (state?.status !== "succeeded") throw new Error(`expected success, got ${state?.status}`);
  return state;
}

describe("OpenAI Images adapter over HTTP", () => {
  let fake: FakeOpenAI;
  let adapter: OpenAIImagesAdapter;

  beforeAll(async () => {
    fake = await FakeOpenAI.start({ apiKey: API_KEY });
    adapter = new OpenAIImagesAdapter({
      apiKey: API_KEY,
      baseUrl: fake.url,
      organization: "org-1",
    });
  });

  afterAll(() => fake.close());

  beforeEach(() => fake.reset());

  it("returns the finished job from submit, with the decoded PNG and its size", async () => {
    const result = await adapter.submit({ ...request, width: 1024, height: 1024 });

    expect(result.providerJobId).toBe(`openai_${request.generationId}_2`);
    const done = succeeded(result.state);
    expect(done.outputs).toHaveLength(1);
    const output = done.outputs[0]!;
    expect(output).toMatchObject({ contentType: "image/png", width: 1024, height: 1024 });
    const png = PNG.sync.read(output.data!);
    expect([png.width, png.height]).toEqual([1024, 1024]);
    expect(done.costUsd).toBe(0.042);
  });

  it("sends the documented request: model, prompt, n=1, size, quality; auth and organization", async () => {
    await adapter.submit({ ...request, negativePrompt: "text", width: 1024, height: 1024 });

    const sent = fake.requests[0]!;
    expect(sent.method).toBe("POST");
    expect(sent.path).toBe("/v1/images/generations");
    expect(sent.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(sent.headers["openai-organization"]).toBe("org-1");
    // No seed or negative prompt: the API has neither. GPT image models always answer base64.
    expect(sent.body).toEqual({
      model: "gpt-image-1",
      prompt: "a paper boat on a puddle",
      n: 1,
      size: "1024x1024",
      quality: "medium",
    });
  });

  it("asks DALL·E for base64 and standard quality, and reports no cost for it", async () => {
    const result = await adapter.submit({
      ...request,
      model: "dall-e-3",
      width: 1024,
      height: 1024,
    });

    expect(fake.requests[0]!.body).toEqual({
      model: "dall-e-3",
      prompt: "a paper boat on a puddle",
      n: 1,
      size: "1024x1024",
      quality: "standard",
      response_format: "b64_json",
    });
    expect(fake.requests[0]!.headers["openai-organization"]).toBe("org-1");
    const done = succeeded(result.state);
    expect(done.costUsd).toBeUndefined();
  });

  it("sends no organization header when none is configured", async () => {
    const plain = new OpenAIImagesAdapter({ apiKey: API_KEY, baseUrl: fake.url });

    await plain.submit(request);

    expect(fake.requests[0]!.headers["openai-organization"]).toBeUndefined();
  });

  it.each<[string, string, number | undefined, number | undefined, string]>([
    ["gpt-image-1", "1200x800", 1200, 800, "1536x1024"],
    ["gpt-image-1", "800x1200", 800, 1200, "1024x1536"],
    ["gpt-image-1", "2048x2048", 2048, 2048, "1024x1024"],
    ["gpt-image-1", "1920x1080", 1920, 1080, "1536x1024"],
    ["gpt-image-1", "no size", undefined, undefined, "1024x1024"],
    ["gpt-image-1-mini", "1024x1536", 1024, 1536, "1024x1536"],
    ["dall-e-3", "1800x1000", 1800, 1000, "1792x1024"],
    ["dall-e-3", "720x1280", 720, 1280, "1024x1792"],
    ["dall-e-3", "640x640", 640, 640, "1024x1024"],
    ["dall-e-2", "300x300", 300, 300, "256x256"],
    ["dall-e-2", "600x500", 600, 500, "512x512"],
    ["dall-e-2", "1920x1080", 1920, 1080, "1024x1024"],
  ])(
    "picks for %s asked %s the closest supported size, %s",
    async (model, _asked, width, height, size) => {
      const result = await adapter.submit({ ...request, model, width, height });

      expect(fake.requests[0]!.body.size).toBe(size);
      const [w, h] = size.split("x").map(Number);
      const output = succeeded(result.state).outputs[0]!;
      expect([output.width, output.height]).toEqual([w, h]);
      const png = PNG.sync.read(output.data!);
      expect([png.width, png.height]).toEqual([w, h]);
    },
  );

  it.each([
    ["gpt-image-1", "1536x1024", 1536, 1024, 0.063],
    ["gpt-image-1-mini", "1024x1024", 1024, 1024, 0.011],
    ["gpt-image-1-mini", "1024x1536", 1024, 1536, 0.015],
  ])("reports the list price of %s at %s", async (model, _size, width, height, costUsd) => {
    const result = await adapter.submit({ ...request, model, width, height });

    expect(succeeded(result.state).costUsd).toBe(costUsd);
  });

  it.each([
    ["dall-e-3", "content_policy_violation"],
    ["gpt-image-1", "moderation_blocked"],
  ])("maps a %s refusal (%s) to CONTENT_REFUSED, not retried", async (model) => {
    expect.assertions(2);
    const err = await adapter
      .submit({ ...request, model, prompt: "something [refuse]" })
      .catch((e: unknown) => e);

    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code: "CONTENT_REFUSED", retryable: false });
  });

  it.each([
    [
      "any other 400",
      400,
      {
        error: {
          message: "Invalid size",
          type: "invalid_request_error",
          param: "size",
          code: "invalid_value",
        },
      },
      {},
      "INVALID_INPUT",
      false,
      undefined,
    ],
    [
      "401",
      401,
      {
        error: {
          message: "Incorrect API key provided",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      },
      {},
      "PROVIDER_AUTH",
      false,
      undefined,
    ],
    [
      "409 (retried by the official SDK)",
      409,
      { error: { message: "conflict", type: "server_error", param: null, code: null } },
      {},
      "PROVIDER_ERROR",
      true,
      undefined,
    ],
    [
      "429 with retry-after-ms",
      429,
      {
        error: {
          message: "Rate limit reached",
          type: "requests",
          param: null,
          code: "rate_limit_exceeded",
        },
      },
      { "retry-after-ms": "1500", "retry-after": "9" },
      "RATE_LIMITED",
      true,
      1500,
    ],
    [
      "429 with Retry-After",
      429,
      {
        error: {
          message: "Rate limit reached",
          type: "requests",
          param: null,
          code: "rate_limit_exceeded",
        },
      },
      { "retry-after": "9" },
      "RATE_LIMITED",
      true,
      9000,
    ],
    [
      "500",
      500,
      {
        error: {
          message: "The server had an error",
          type: "server_error",
          param: null,
          code: null,
        },
      },
      {},
      "PROVIDER_ERROR",
      true,
      undefined,
    ],
    [
      "503",
      503,
      { error: { message: "overloaded", type: "server_error", param: null, code: null } },
      {},
      "PROVIDER_ERROR",
      true,
      undefined,
    ],
  ])("maps %s", async (_label, status, body, headers, code, retryable, retryAfterMs) => {
    expect.assertions(2);
    fake.failNext(status, body, headers);

    const err = await adapter.submit(request).catch((e: unknown) => e);

    expect(err).toBeInstanceOf(ProviderError);
    expect(err).toMatchObject({ code, retryable, retryAfterMs });
  });

  it("maps an unknown model to MODEL_NOT_FOUND", async () => {
    expect.assertions(1);
    await expect(adapter.submit({ ...request, model: "gpt-image-0" })).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
      retryable: false,
    });
  });

  it("maps a wrong API key to PROVIDER_AUTH", async () => {
    expect.assertions(1);
    const wrongKey = new OpenAIImagesAdapter({ apiKey: "sk-nope", baseUrl: fake.url });

    await expect(wrongKey.submit(request)).rejects.toMatchObject({
      code: "PROVIDER_AUTH",
      retryable: false,
    });
  });

  it("treats an answer without image data as a retryable provider error", async () => {
    expect.assertions(2);
    fake.failNext(200, { created: 1, data: [] });
    await expect(adapter.submit(request)).rejects.toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
    });

    fake.failNext(200);
    await expect(adapter.submit(request)).rejects.toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
    });
  });

  it("maps a refused connection to a retryable provider error", async () => {
    expect.assertions(1);
    const down = new OpenAIImagesAdapter({ apiKey: API_KEY, baseUrl: await refusedUrl() });

    await expect(down.submit(request)).rejects.toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
    });
  });

  it("maps a generation past its deadline to a retryable timeout", async () => {
    expect.assertions(1);
    const impatient = new OpenAIImagesAdapter({
      apiKey: API_KEY,
      baseUrl: fake.url,
      timeoutMs: 100,
    });
    fake.hangNext();

    await expect(impatient.submit(request)).rejects.toMatchObject({
      code: "PROVIDER_TIMEOUT",
      retryable: true,
    });
  });

  it("refuses media other than images without calling OpenAI", async () => {
    expect.assertions(2);
    await expect(adapter.submit({ ...request, mediaType: "VIDEO" })).rejects.toMatchObject({
      code: "INVALID_INPUT",
      retryable: false,
    });
    expect(fake.requests).toHaveLength(0);
  });

  it("answers a later status call with a retryable not-found: the result lived only in submit", async () => {
    expect.assertions(2);
    const { providerJobId } = await adapter.submit(request);

    await expect(adapter.getStatus(providerJobId)).rejects.toMatchObject({
      code: "PROVIDER_JOB_NOT_FOUND",
      retryable: true,
    });
    expect(fake.requests).toHaveLength(1);
  });

  it("cancels without calling OpenAI", async () => {
    await expect(adapter.cancel(`openai_${request.generationId}_2`)).resolves.toBeUndefined();
    expect(fake.requests).toHaveLength(0);
    expect(adapter.supportsWebhooks).toBe(false);
  });
});
