import { EmbedderError, OpenAiCompatibleEmbedder } from "../../src/cache";
import { FakeEmbeddings } from "../helpers/fake-embeddings";
import { freePort } from "../helpers/ports";

const API_KEY = "sk-embed-secret-0123456789";

function norm(v: number[]): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

function unit(v: number[]): number[] {
  const n = norm(v);
  return v.map((x) => x / n);
}

/** The embedder's error, or a failure when it resolved. */
async function failure(promise: Promise<unknown>): Promise<EmbedderError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(EmbedderError);
    return err as EmbedderError;
  }
  throw new Error("expected the embedder to fail");
}

describe("OpenAI-compatible embedder over HTTP", () => {
  let fake: FakeEmbeddings;
  let embedder: OpenAiCompatibleEmbedder;

  beforeAll(async () => {
    fake = await FakeEmbeddings.start({ apiKey: API_KEY });
    embedder = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: API_KEY,
      model: "tiny-embed",
      dimensions: 8,
      maxBatch: 3,
      timeoutMs: 2_000,
    });
  });

  afterAll(() => fake.close());

  beforeEach(() => fake.reset());

  it("sends the documented request with the key as a Bearer token", async () => {
    await embedder.embed(["a red fox", "a blue car"]);

    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(sent.headers["content-type"]).toBe("application/json");
    // No `dimensions` unless asked for: most models reject it.
    expect(sent.body).toEqual({ model: "tiny-embed", input: ["a red fox", "a blue car"] });
  });

  it("returns unit vectors in input order even when the server answers out of order", async () => {
    fake.reverseOrder = true;
    const texts = ["first", "second", "third"];

    const vectors = await embedder.embed(texts);

    expect(vectors).toHaveLength(3);
    vectors.forEach((v, i) => {
      expect(norm(v)).toBeCloseTo(1, 12);
      const expected = unit(FakeEmbeddings.vector(texts[i]!, 8));
      v.forEach((x, d) => expect(x).toBeCloseTo(expected[d]!, 12));
    });
  });

  it("splits more texts than maxBatch into consecutive calls and keeps the order", async () => {
    const texts = ["t0", "t1", "t2", "t3", "t4", "t5", "t6"];

    const vectors = await embedder.embed(texts);

    expect(fake.requests.map((r) => r.body.input)).toEqual([
      ["t0", "t1", "t2"],
      ["t3", "t4", "t5"],
      ["t6"],
    ]);
    expect(vectors).toEqual(texts.map((t) => unit(FakeEmbeddings.vector(t, 8))));
  });

  it("makes no call for no texts", async () => {
    await expect(embedder.embed([])).resolves.toEqual([]);
    expect(fake.requests).toHaveLength(0);
  });

  it("sends no Authorization header without a key", async () => {
    const open = await FakeEmbeddings.start();
    try {
      const keyless = new OpenAiCompatibleEmbedder({
        baseUrl: `${open.url}/v1/`,
        model: "tiny-embed",
        dimensions: 8,
      });
      await expect(keyless.embed(["hello"])).resolves.toHaveLength(1);
      expect(open.requests[0]!.headers.authorization).toBeUndefined();
    } finally {
      await open.close();
    }
  });

  it("asks for shortened vectors with `dimensions` when told to", async () => {
    const shortened = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: API_KEY,
      model: "text-embedding-3-small",
      dimensions: 256,
      requestDimensions: true,
    });

    const [vector] = await shortened.embed(["a lighthouse in a storm"]);

    expect(fake.requests[0]!.body.dimensions).toBe(256);
    expect(vector).toHaveLength(256);
    expect(shortened.id).toBe("openai-compatible:text-embedding-3-small:256");
  });

  it("refuses vectors of another length than configured, without retrying", async () => {
    const mismatched = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: API_KEY,
      model: "text-embedding-3-small",
      dimensions: 384,
    });

    const err = await failure(mismatched.embed(["a cat"]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/1536 dimensions, expected 384/);
    expect(fake.requests).toHaveLength(1);
  });

  it.each([
    [
      "fewer embeddings than inputs",
      (a: any) => ({ ...a, data: a.data.slice(1) }),
      /1 embeddings for 2 inputs/,
    ],
    [
      "a repeated index",
      (a: any) => ({ ...a, data: a.data.map((d: any) => ({ ...d, index: 0 })) }),
      /appears twice/,
    ],
    [
      "a non-number",
      (a: any) => ({
        ...a,
        data: a.data.map((d: any) => ({ ...d, embedding: d.embedding.map(() => "x") })),
      }),
      /finite numbers/,
    ],
    [
      "a zero vector",
      (a: any) => ({
        ...a,
        data: a.data.map((d: any) => ({ ...d, embedding: d.embedding.map(() => 0) })),
      }),
      /all zeros/,
    ],
    ["no data list", () => ({ object: "list" }), /no `data` list/],
  ])("refuses an answer with %s", async (_name, transform, message) => {
    fake.alterNext(transform);

    const err = await failure(embedder.embed(["one", "two"]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(message);
  });

  it("treats a rate limit (429) as retryable and says so", async () => {
    fake.failNext(
      429,
      {
        error: {
          message: "Rate limit reached for requests",
          type: "requests",
          code: "rate_limit_exceeded",
        },
      },
      { "retry-after": "1" },
    );

    const err = await failure(embedder.embed(["a cat"]));

    expect(err.name).toBe("EmbedderError");
    expect(err.retryable).toBe(true);
    expect(err.message).toBe(
      `embeddings tiny-embed at ${new URL(fake.url).host}: HTTP 429: Rate limit reached for requests`,
    );
    expect(fake.requests).toHaveLength(1);
  });

  it("treats a server error (500) as retryable, with a plain-text body in the message", async () => {
    fake.failNext(500, "upstream model crashed");

    const err = await failure(embedder.embed(["a cat"]));

    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/HTTP 500: upstream model crashed$/);
  });

  it("treats a rejected request (400) as not retryable, with the server's message", async () => {
    const err = await failure(embedder.embed(["fine", ""]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/HTTP 400: '\$\.input' is invalid\./);
  });

  it("treats an unknown model (404) as not retryable", async () => {
    const unknown = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: API_KEY,
      model: "no-such-model",
      dimensions: 8,
    });

    const err = await failure(unknown.embed(["a cat"]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/HTTP 404: The model `no-such-model` does not exist/);
  });

  it("never puts the API key in a message, even when the server echoes it", async () => {
    const wrongKey = "sk-wrong-key-9876543210";
    const wrong = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: wrongKey,
      model: "tiny-embed",
      dimensions: 8,
    });

    const err = await failure(wrong.embed(["a cat"]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/HTTP 401: Incorrect API key provided: \[api key\]/);
    expect(err.message).not.toContain(wrongKey);
    expect(err.stack).not.toContain(wrongKey);
  });

  it("treats an answer that is not JSON as not retryable", async () => {
    fake.failNext(200, '{"object":"list","data":[');

    const err = await failure(embedder.embed(["a cat"]));

    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/answer is not JSON/);
  });

  it("gives up on a server that does not answer within timeoutMs, as retryable", async () => {
    expect.assertions(5);
    const impatient = new OpenAiCompatibleEmbedder({
      baseUrl: fake.url,
      apiKey: API_KEY,
      model: "tiny-embed",
      dimensions: 8,
      timeoutMs: 200,
    });
    const hold = fake.holdNext();

    const result = failure(impatient.embed(["a cat"]));
    await hold.arrived;
    const err = await result;
    hold.release();

    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/no answer within 200 ms/);
    expect(fake.requests).toHaveLength(1);
    expect(err.message).not.toContain(API_KEY);
  });

  it("treats a refused connection as retryable", async () => {
    const port = await freePort();
    const nowhere = new OpenAiCompatibleEmbedder({
      baseUrl: `http://127.0.0.1:${port}`,
      model: "tiny-embed",
      dimensions: 8,
    });

    const err = await failure(nowhere.embed(["a cat"]));

    expect(err.retryable).toBe(true);
    expect(err.message).toBe(
      `embeddings tiny-embed at 127.0.0.1:${port}: request failed (ECONNREFUSED)`,
    );
  });

  it("fails at construction on settings a person must fix", () => {
    const base = { baseUrl: fake.url, model: "tiny-embed", dimensions: 8 };
    expect(() => new OpenAiCompatibleEmbedder({ ...base, baseUrl: "localhost:11434" })).toThrow(
      /not an http\(s\) URL/,
    );
    expect(() => new OpenAiCompatibleEmbedder({ ...base, model: "" })).toThrow(/model is empty/);
    expect(() => new OpenAiCompatibleEmbedder({ ...base, dimensions: 0 })).toThrow(
      /dimensions must be/,
    );
    expect(() => new OpenAiCompatibleEmbedder({ ...base, maxBatch: 0 })).toThrow(/maxBatch/);
  });
});
