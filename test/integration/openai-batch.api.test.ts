import { PNG } from "pngjs";
import {
  ProviderError,
  type BatchItem,
  type BatchState,
  type FinishedJobState,
} from "../../src/providers";
import { OpenAIBatchApi, OpenAIImagesAdapter } from "../../src/providers/openai";
import { FakeOpenAI } from "../helpers/fake-openai";

const API_KEY = "sk-batch-key";
const KEY = "6f0c1e52-0000-4000-8000-00000000b001";

function item(customId: string, prompt: string, extra: Partial<BatchItem["request"]> = {}) {
  return {
    customId,
    request: {
      generationId: customId.split(".")[0]!,
      attempt: 1,
      model: "gpt-image-1",
      mediaType: "IMAGE" as const,
      prompt,
      seed: 3,
      width: 1024,
      height: 1024,
      ...extra,
    },
  };
}

function completed(state: BatchState): Map<string, FinishedJobState> {
  if (state.status !== "completed") throw new Error(`expected completed, got ${state.status}`);
  return state.results;
}

describe("OpenAI Batch API over HTTP", () => {
  let fake: FakeOpenAI;
  let api: OpenAIBatchApi;

  beforeAll(async () => {
    fake = await FakeOpenAI.start({ apiKey: API_KEY });
    api = new OpenAIBatchApi({ apiKey: API_KEY, baseUrl: fake.url, organization: "org-b" });
  });

  afterAll(() => fake.close());

  beforeEach(() => fake.reset());

  it("uploads one JSONL line per item, each the synchronous adapter's body, then creates the batch", async () => {
    const items = [
      item("g1.1", "a lighthouse at dusk"),
      item("g2.1", "a lighthouse at dawn", { width: 1200, height: 800, negativePrompt: "fog" }),
    ];

    const { providerBatchId } = await api.submit(items, {
      model: "gpt-image-1",
      idempotencyKey: KEY,
    });

    const [search, upload, create] = fake.requests;
    expect(fake.requests).toHaveLength(3);
    expect(`${search!.method} ${search!.path}`).toBe("GET /v1/batches?limit=100");
    expect(`${upload!.method} ${upload!.path}`).toBe("POST /v1/files");
    expect(upload!.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
    const file = upload!.body.file as { filename: string; content: string };
    expect(upload!.body.purpose).toBe("batch");
    expect(file.filename).toBe(`gengate-batch-${KEY}.jsonl`);
    const lines = file.content
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.custom_id, l.method, l.url])).toEqual([
      ["g1.1", "POST", "/v1/images/generations"],
      ["g2.1", "POST", "/v1/images/generations"],
    ]);

    // The same bodies the synchronous adapter sends for the same requests.
    const sync = new OpenAIImagesAdapter({ apiKey: API_KEY, baseUrl: fake.url });
    const before = fake.requests.length;
    for (const i of items) await sync.submit(i.request);
    const syncBodies = fake.requests.slice(before).map((r) => r.body);
    expect(lines.map((l) => l.body)).toEqual(syncBodies);
    expect(lines[1].body).toEqual({
      model: "gpt-image-1",
      prompt: "a lighthouse at dawn",
      n: 1,
      size: "1536x1024",
      quality: "medium",
    });

    expect(`${create!.method} ${create!.path}`).toBe("POST /v1/batches");
    const uploaded = [...fake.files.values()][0]!;
    expect(create!.body).toEqual({
      input_file_id: uploaded.id,
      endpoint: "/v1/images/generations",
      completion_window: "24h",
      metadata: { gengate_batch_id: KEY, gengate_model: "gpt-image-1" },
    });
    for (const r of [search, upload, create]) {
      expect(r!.headers.authorization).toBe(`Bearer ${API_KEY}`);
      expect(r!.headers["openai-organization"]).toBe("org-b");
    }
    expect(providerBatchId).toBe(fake.batches[0]!.id);
  });

  it("answers a repeated submission with the batch the first one created, uploading nothing", async () => {
    const items = [item("g1.1", "a red door")];
    const first = await api.submit(items, { model: "gpt-image-1", idempotencyKey: KEY });
    const before = fake.requests.length;

    const again = await api.submit(items, { model: "gpt-image-1", idempotencyKey: KEY });

    expect(again.providerBatchId).toBe(first.providerBatchId);
    expect(fake.batches).toHaveLength(1);
    expect(fake.files.size).toBe(1);
    expect(fake.requests.slice(before).map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /v1/batches?limit=100",
    ]);
  });

  it("pages back through newer batches to find an earlier submission", async () => {
    const collectedAt = new Date();
    const first = await api.submit([item("g1.1", "a blue door")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
      collectedAt,
    });
    // 150 batches made by others since: the first page holds none of ours.
    for (let i = 0; i < 150; i++) fake.seedBatch({ metadata: { job: `other-${i}` } });
    const before = fake.requests.length;

    const again = await api.submit([item("g1.1", "a blue door")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
      collectedAt,
    });

    expect(again.providerBatchId).toBe(first.providerBatchId);
    const paths = fake.requests.slice(before).map((r) => r.path);
    expect(paths).toHaveLength(2);
    expect(paths[1]).toMatch(/^\/v1\/batches\?limit=100&after=batch_/);
    expect(fake.batches.filter((b) => b.metadata?.gengate_batch_id === KEY)).toHaveLength(1);
  });

  it("stops looking once the list reaches back before the batch was collected", async () => {
    const dayAgo = Math.floor(Date.now() / 1000) - 86400;
    for (let i = 0; i < 250; i++) fake.seedBatch({ createdAt: dayAgo - i });

    await api.submit([item("g1.1", "a green door")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
      collectedAt: new Date(),
    });

    const lists = fake.requests.filter((r) => r.path.startsWith("/v1/batches?"));
    expect(lists).toHaveLength(1);
    expect(fake.batches.filter((b) => b.metadata?.gengate_batch_id === KEY)).toHaveLength(1);
  });

  it("refuses media other than images before calling OpenAI", async () => {
    expect.assertions(2);
    await expect(
      api.submit([item("g1.1", "a song", { mediaType: "AUDIO" })], {
        model: "gpt-image-1",
        idempotencyKey: KEY,
      }),
    ).rejects.toMatchObject({ code: "INVALID_INPUT", retryable: false });
    expect(fake.requests).toHaveLength(0);
  });

  it.each([
    ["validating", 0],
    ["in_progress", 1],
    ["finalizing", 2],
    ["cancelling", 1],
  ])("reports a %s batch as pending, with how many requests finished", async (status, done) => {
    const { providerBatchId } = await api.submit([item("g1.1", "a kite"), item("g2.1", "a boat")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
    });
    const batch = fake.batch(providerBatchId);
    batch.status = status;
    batch.request_counts.completed = done;

    const state = await api.getStatus(providerBatchId);

    expect(state).toMatchObject({ status: "pending", finished: done });
    expect(state.status === "pending" && state.pollAfterMs).toBeGreaterThanOrEqual(1000);
    expect(fake.requests.at(-1)!.path).toBe(`/v1/batches/${providerBatchId}`);
  });

  it("returns each request's result: images as PNG bytes at the batch price, errors mapped like the synchronous adapter's", async () => {
    const { providerBatchId } = await api.submit(
      [
        item("ok.1", "a paper boat", { width: 1024, height: 1536 }),
        item("refused.1", "a paper boat [refuse]"),
        item("busy.1", "a paper boat, busy"),
        item("broken.1", "a paper boat, broken"),
        item("gone.1", "a paper boat", { model: "gpt-image-0" }),
      ],
      { model: "gpt-image-1", idempotencyKey: KEY },
    );
    fake.advance(providerBatchId, "in_progress");
    expect((await api.getStatus(providerBatchId)).status).toBe("pending");
    const error = (status: number, code: string | null, message: string) => ({
      status,
      body: { error: { message, type: "server_error", param: null, code } },
    });
    fake.finish(providerBatchId, {
      answers: {
        "busy.1": error(429, "rate_limit_exceeded", "Rate limit reached"),
        "broken.1": error(500, null, "The server had an error"),
      },
    });

    const results = completed(await api.getStatus(providerBatchId));

    expect([...results.keys()].sort()).toEqual([
      "broken.1",
      "busy.1",
      "gone.1",
      "ok.1",
      "refused.1",
    ]);
    const ok = results.get("ok.1")!;
    if (ok.status !== "succeeded") throw new Error(ok.status);
    expect(ok.outputs).toHaveLength(1);
    expect(ok.outputs[0]).toMatchObject({ contentType: "image/png", width: 1024, height: 1536 });
    const png = PNG.sync.read(ok.outputs[0]!.data!);
    expect([png.width, png.height]).toEqual([1024, 1536]);
    // gpt-image-1 medium 1024x1536 lists at $0.063: half of it.
    expect(ok.costUsd).toBe(0.0315);
    const errorOf = (id: string) => {
      const r = results.get(id)!;
      return r.status === "failed" ? r.error : null;
    };
    expect(errorOf("refused.1")).toMatchObject({ code: "CONTENT_REFUSED", retryable: false });
    expect(errorOf("busy.1")).toMatchObject({ code: "RATE_LIMITED", retryable: true });
    expect(errorOf("broken.1")).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
    expect(errorOf("gone.1")).toMatchObject({ code: "MODEL_NOT_FOUND", retryable: false });
    const reads = fake.requests.filter((r) => r.path.endsWith("/content"));
    expect(reads.map((r) => r.path).sort()).toEqual(
      [
        `/v1/files/${fake.batch(providerBatchId).output_file_id}/content`,
        `/v1/files/${fake.batch(providerBatchId).error_file_id}/content`,
      ].sort(),
    );
  });

  it("leaves the price of a model OpenAI's pages do not list to the catalog", async () => {
    const { providerBatchId } = await api.submit(
      [item("g1.1", "a tram", { model: "gpt-image-1.5" })],
      { model: "gpt-image-1.5", idempotencyKey: KEY },
    );
    fake.finish(providerBatchId);

    const result = completed(await api.getStatus(providerBatchId)).get("g1.1")!;

    expect(result.status).toBe("succeeded");
    expect(result.status === "succeeded" && result.costUsd).toBeUndefined();
  });

  it("returns what an expired batch finished, and the rest as retryable timeouts", async () => {
    const { providerBatchId } = await api.submit(
      [item("a.1", "a bridge"), item("b.1", "a tunnel"), item("c.1", "a road")],
      { model: "gpt-image-1", idempotencyKey: KEY },
    );
    fake.finish(providerBatchId, { status: "expired", run: 1 });

    const results = completed(await api.getStatus(providerBatchId));

    expect(results.get("a.1")!.status).toBe("succeeded");
    for (const id of ["b.1", "c.1"]) {
      const r = results.get(id)!;
      expect(r.status === "failed" && r.error).toMatchObject({
        code: "PROVIDER_TIMEOUT",
        retryable: true,
      });
    }
  });

  it("reports a batch OpenAI refused as a whole as failed, retryable so each request may run alone", async () => {
    const { providerBatchId } = await api.submit([item("a.1", "a bridge")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
    });
    fake.failBatch(providerBatchId, "Token limit exceeded.");

    const state = await api.getStatus(providerBatchId);

    expect(state.status).toBe("failed");
    expect(state.status === "failed" && state.error).toMatchObject({
      code: "PROVIDER_ERROR",
      retryable: true,
      message: expect.stringContaining("Token limit exceeded."),
    });
  });

  it("reports a batch OpenAI does not know as failed, retryable", async () => {
    const state = await api.getStatus("batch_unknown");

    expect(state.status === "failed" && state.error).toMatchObject({
      code: "PROVIDER_JOB_NOT_FOUND",
      retryable: true,
    });
  });

  it("counts the requests of a result file that is gone as not run", async () => {
    const { providerBatchId } = await api.submit([item("a.1", "a bridge")], {
      model: "gpt-image-1",
      idempotencyKey: KEY,
    });
    fake.finish(providerBatchId);
    fake.files.delete(fake.batch(providerBatchId).output_file_id!);

    expect(completed(await api.getStatus(providerBatchId)).size).toBe(0);
  });

  it("cancels a batch, and reads the cancelled batch's partial results", async () => {
    const { providerBatchId } = await api.submit(
      [item("a.1", "a bridge"), item("b.1", "a tunnel")],
      { model: "gpt-image-1", idempotencyKey: KEY },
    );
    fake.advance(providerBatchId, "in_progress", 1);

    await api.cancel(providerBatchId);

    const sent = fake.requests.at(-1)!;
    expect(`${sent.method} ${sent.path}`).toBe(`POST /v1/batches/${providerBatchId}/cancel`);
    expect(fake.batch(providerBatchId).status).toBe("cancelling");
    expect((await api.getStatus(providerBatchId)).status).toBe("pending");
    fake.finishCancel(providerBatchId, 1);
    const results = completed(await api.getStatus(providerBatchId));
    expect(results.get("a.1")!.status).toBe("succeeded");
    const b = results.get("b.1")!;
    expect(b.status === "failed" && b.error).toMatchObject({ retryable: true });
    // Cancelling what has already ended, or is unknown, changes nothing and does not throw.
    await expect(api.cancel(providerBatchId)).resolves.toBeUndefined();
    await expect(api.cancel("batch_unknown")).resolves.toBeUndefined();
  });

  describe.each([
    [
      "submit",
      () => api.submit([item("a.1", "a bridge")], { model: "gpt-image-1", idempotencyKey: KEY }),
    ],
    ["status", () => api.getStatus("batch_any")],
  ])("HTTP errors on %s", (_label, call) => {
    it.each([
      [401, {}, "PROVIDER_AUTH", false, undefined],
      [429, { "retry-after-ms": "1500" }, "RATE_LIMITED", true, 1500],
      [500, {}, "PROVIDER_ERROR", true, undefined],
    ])("maps %s like the synchronous adapter", async (status, headers, code, retryable, after) => {
      expect.assertions(2);
      fake.failNext(
        status,
        { error: { message: "no", type: "server_error", param: null, code: null } },
        headers,
      );

      const err = await call().catch((e: unknown) => e);

      expect(err).toBeInstanceOf(ProviderError);
      expect(err).toMatchObject({ code, retryable, retryAfterMs: after });
    });
  });

  it("maps a wrong API key to PROVIDER_AUTH on every call", async () => {
    expect.assertions(3);
    const wrong = new OpenAIBatchApi({ apiKey: "sk-nope", baseUrl: fake.url });

    await expect(
      wrong.submit([item("a.1", "a bridge")], { model: "gpt-image-1", idempotencyKey: KEY }),
    ).rejects.toMatchObject({ code: "PROVIDER_AUTH", retryable: false });
    await expect(wrong.getStatus("batch_any")).rejects.toMatchObject({ code: "PROVIDER_AUTH" });
    expect(fake.batches).toHaveLength(0);
  });

  it("is the synchronous adapter's batch API, with the 24 h window as its deadline and half the price", () => {
    const adapter = new OpenAIImagesAdapter({ apiKey: API_KEY, baseUrl: fake.url });

    expect(adapter.batch).toBeInstanceOf(OpenAIBatchApi);
    expect(adapter.batch.discount).toBe(0.5);
    expect(adapter.batch.deadlineMs).toBeGreaterThan(24 * 3600_000);
    expect(adapter.batch.maxItems).toBeLessThanOrEqual(50_000);
  });
});
