import { randomUUID } from "node:crypto";
import { gql, errorCode } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) {
  generate(input: $input) { id userId status prompt model width height durationSeconds seed }
}`;
const ESTIMATE = `query($input: GenerateInput!) {
  estimateCost(input: $input) {
    estimatedCostUsd model estimatedSeconds
    breakdown { baseCostUsd resolutionMultiplier durationMultiplier batchDiscount }
  }
}`;
const LIST = `query($first: Int, $after: String) {
  generations(first: $first, after: $after) { totalCount edges { node { id } } }
}`;
const GET = `query($id: ID!) { generation(id: $id) { id } }`;

type Input = Record<string, unknown>;

const IMAGE: Input = {
  userId: "v-user",
  mediaType: "IMAGE",
  prompt: "a valid prompt",
  model: "sim-image-standard",
  width: 512,
  height: 512,
};
const VIDEO: Input = {
  userId: "v-user",
  mediaType: "VIDEO",
  prompt: "a valid clip",
  model: "sim-video",
};
const AUDIO: Input = {
  userId: "v-user",
  mediaType: "AUDIO",
  prompt: "a valid sound",
  model: "sim-audio",
};

/** Each input differs from a valid one in exactly one field, which the error must name. */
const INVALID: Array<[string, Input, string]> = [
  ["an empty prompt", { ...IMAGE, prompt: "" }, "prompt"],
  ["a whitespace-only prompt", { ...IMAGE, prompt: "  \n\t  " }, "prompt"],
  ["a prompt of 4001 characters", { ...IMAGE, prompt: "p".repeat(4001) }, "prompt"],
  [
    "a negativePrompt of 4001 characters",
    { ...IMAGE, negativePrompt: "n".repeat(4001) },
    "negativePrompt",
  ],
  ["an unknown model", { ...IMAGE, model: "no-such-model" }, "model"],
  ["a model of another media type", { ...IMAGE, model: "sim-audio" }, "model"],
  ["quality 0", { ...IMAGE, quality: 0 }, "quality"],
  ["quality 11", { ...IMAGE, quality: 11 }, "quality"],
  ["a width below the model's minimum", { ...IMAGE, width: 56 }, "width"],
  ["a width above the model's maximum", { ...IMAGE, width: 2056 }, "width"],
  ["a width that is not a multiple of 8", { ...IMAGE, width: 500 }, "width"],
  ["a height below the model's minimum", { ...IMAGE, height: 56 }, "height"],
  ["a height above the model's maximum", { ...IMAGE, height: 2056 }, "height"],
  ["a height that is not a multiple of 8", { ...IMAGE, height: 500 }, "height"],
  ["a width above the video model's maximum", { ...VIDEO, width: 1032 }, "width"],
  ["a width for AUDIO", { ...AUDIO, width: 512 }, "width"],
  ["a height for AUDIO", { ...AUDIO, height: 512 }, "height"],
  ["durationSeconds for IMAGE", { ...IMAGE, durationSeconds: 2 }, "durationSeconds"],
  [
    "durationSeconds below the VIDEO minimum",
    { ...VIDEO, durationSeconds: 0.5 },
    "durationSeconds",
  ],
  [
    "durationSeconds above the VIDEO maximum",
    { ...VIDEO, durationSeconds: 10.5 },
    "durationSeconds",
  ],
  [
    "durationSeconds below the AUDIO minimum",
    { ...AUDIO, durationSeconds: 0.5 },
    "durationSeconds",
  ],
  ["durationSeconds above the AUDIO maximum", { ...AUDIO, durationSeconds: 61 }, "durationSeconds"],
  ["a negative durationSeconds", { ...AUDIO, durationSeconds: -5 }, "durationSeconds"],
  ["seed -1", { ...IMAGE, seed: -1 }, "seed"],
  ["a callbackUrl that is not a URL", { ...IMAGE, callbackUrl: "not a url" }, "callbackUrl"],
  ["an ftp callbackUrl", { ...IMAGE, callbackUrl: "ftp://x" }, "callbackUrl"],
  ["a callbackUrl with credentials", { ...IMAGE, callbackUrl: "http://user:pw@x" }, "callbackUrl"],
  [
    "a callbackUrl over 2048 characters",
    { ...IMAGE, callbackUrl: `https://example.com/${"c".repeat(2048)}` },
    "callbackUrl",
  ],
  [
    "an unknown fallback model",
    { ...IMAGE, fallbackModels: ["no-such-model"] },
    "fallbackModels[0]",
  ],
  [
    "a fallback model of another media type",
    { ...IMAGE, fallbackModels: ["sim-image-fast", "sim-video"] },
    "fallbackModels[1]",
  ],
  [
    "more than 5 fallback models",
    { ...IMAGE, fallbackModels: Array.from({ length: 6 }, () => "sim-image-pro") },
    "fallbackModels",
  ],
  ["an empty idempotencyKey", { ...IMAGE, idempotencyKey: "" }, "idempotencyKey"],
  [
    "an idempotencyKey of 256 characters",
    { ...IMAGE, idempotencyKey: "k".repeat(256) },
    "idempotencyKey",
  ],
  ["metadata that is an array", { ...IMAGE, metadata: [1, 2, 3] }, "metadata"],
  ["metadata that is a string", { ...IMAGE, metadata: "note" }, "metadata"],
  [
    "metadata over 16 KB as JSON",
    { ...IMAGE, metadata: { blob: "m".repeat(16 * 1024) } },
    "metadata",
  ],
  ["no userId with a PARTNER key", { ...IMAGE, userId: undefined }, "userId"],
  ["an empty userId", { ...IMAGE, userId: "" }, "userId"],
  ["a userId with surrounding spaces", { ...IMAGE, userId: " v-user " }, "userId"],
  ["a userId of 201 characters", { ...IMAGE, userId: "u".repeat(201) }, "userId"],
];

describe("generate input validation", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;

  beforeAll(async () => {
    env = await createTestEnv();
    // Only the api: validation happens before the queue, and nothing here needs to run.
    server = await startTestServer(env, { worker: false });
    key = (await partner(server, await adminKey(server))).key;
  });

  afterAll(async () => {
    await server?.stop();
    await env?.cleanup();
  });

  /** Rows a refused request must not have created. */
  async function stored(): Promise<{ generations: number; endUsers: number }> {
    const [row] = await server.app.db.dataSource.query(
      `SELECT (SELECT count(*)::int FROM generations) AS generations,
              (SELECT count(*)::int FROM end_users) AS "endUsers"`,
    );
    return row;
  }

  describe("generate", () => {
    it.each(INVALID)(
      "refuses %s with BAD_USER_INPUT naming the field, and stores nothing",
      async (_name, input, field) => {
        const before = await stored();
        const res = await gql(server.url, GENERATE, { input }, key);
        expect(errorCode(res)).toBe("BAD_USER_INPUT");
        expect(res.errors![0]!.extensions!.field).toBe(field);
        expect(res.data?.generate ?? null).toBeNull();
        expect(await stored()).toEqual(before);
      },
    );

    it.each([
      ["seed 2147483648, beyond GraphQL Int", { ...IMAGE, seed: 2147483648 }],
      ["quality 5.5, not an Int", { ...IMAGE, quality: 5.5 }],
      ["a width given as a string", { ...IMAGE, width: "512" }],
      ["no prompt at all", { ...IMAGE, prompt: undefined }],
    ])(
      "refuses %s as a variable error with BAD_USER_INPUT, and stores nothing",
      async (_n, input) => {
        const before = await stored();
        const res = await gql(server.url, GENERATE, { input }, key);
        expect(errorCode(res)).toBe("BAD_USER_INPUT");
        expect(res.status).toBeLessThan(500);
        expect(res.data?.generate ?? null).toBeNull();
        expect(await stored()).toEqual(before);
      },
    );

    it.each([
      ["mediaType", { ...IMAGE, mediaType: "HOLOGRAM" }],
      ["priority", { ...IMAGE, priority: "URGENT" }],
      ["contentType", { ...IMAGE, contentType: "POSTER" }],
      ["cache", { ...IMAGE, cache: "SOMETIMES" }],
    ])("refuses a %s outside its enum as a GraphQL error, not a 500", async (_n, input) => {
      const before = await stored();
      const res = await gql(server.url, GENERATE, { input }, key);
      expect(["BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"]).toContain(errorCode(res));
      expect(res.status).not.toBe(500);
      expect(res.status).toBeLessThan(500);
      expect(await stored()).toEqual(before);
    });

    it("refuses an enum value outside the enum written inline in the query, not a 500", async () => {
      const res = await gql(
        server.url,
        `mutation { generate(input: { userId: "v", mediaType: HOLOGRAM, prompt: "x" }) { id } }`,
        {},
        key,
      );
      expect(["BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"]).toContain(errorCode(res));
      expect(res.status).toBeLessThan(500);
    });

    it.each([
      ["prompt", { ...IMAGE, prompt: "a cat\u0000 on a mat" }],
      ["negativePrompt", { ...IMAGE, negativePrompt: "blur\u0000" }],
      ["userId", { ...IMAGE, userId: "v\u0000user" }],
      ["idempotencyKey", { ...IMAGE, idempotencyKey: "k\u0000" }],
      ["metadata", { ...IMAGE, metadata: { note: "a\u0000b" } }],
    ])(
      "refuses a NUL character in %s with BAD_USER_INPUT naming it, not an internal error",
      async (field, input) => {
        const before = await stored();
        const res = await gql(server.url, GENERATE, { input }, key);
        expect(errorCode(res)).toBe("BAD_USER_INPUT");
        expect(res.errors![0]!.extensions!.field).toBe(field);
        expect(await stored()).toEqual(before);
      },
    );

    it("accepts a prompt of exactly 4000 characters", async () => {
      const prompt = "q".repeat(4000);
      const res = await gql(server.url, GENERATE, { input: { ...IMAGE, prompt } }, key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generate.prompt).toBe(prompt);
    });

    it("accepts the edges of every range", async () => {
      const ok: Input[] = [
        { ...IMAGE, width: 64, height: 2048, quality: 1, seed: 0 },
        { ...IMAGE, quality: 10, seed: 2147483647, idempotencyKey: "k".repeat(255) },
        { ...VIDEO, durationSeconds: 1, width: 1024, height: 64 },
        { ...VIDEO, durationSeconds: 10 },
        { ...AUDIO, durationSeconds: 60, callbackUrl: "https://93.184.216.34/hook?x=1" },
        { ...AUDIO, durationSeconds: 1, metadata: { order: 42, tags: ["a"] } },
        { ...IMAGE, negativePrompt: "n".repeat(4000), fallbackModels: ["sim-image-pro"] },
      ];
      for (const input of ok) {
        const res = await gql(server.url, GENERATE, { input }, key);
        expect(res.errors).toBeUndefined();
        expect(res.data!.generate.status).toBe("QUEUED");
      }
    });
  });

  describe("generations and generation", () => {
    it.each([0, 101, -1])("refuses generations(first: %p) with BAD_USER_INPUT", async (first) => {
      const res = await gql(server.url, LIST, { first }, key);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("first");
    });

    it("accepts generations(first: 100)", async () => {
      const res = await gql(server.url, LIST, { first: 100 }, key);
      expect(res.errors).toBeUndefined();
    });

    it.each([
      ["garbage", "garbage"],
      ["a cursor that is JSON but not a cursor", Buffer.from(`{"a":1}`).toString("base64url")],
      [
        "a cursor with a malformed id",
        Buffer.from(JSON.stringify([new Date().toISOString(), "x"])).toString("base64url"),
      ],
      [
        "a cursor whose date Postgres cannot read",
        Buffer.from(JSON.stringify(["1", randomUUID()])).toString("base64url"),
      ],
    ])("refuses generations(after: %s) with BAD_USER_INPUT", async (_name, after) => {
      const res = await gql(server.url, LIST, { after }, key);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("after");
      expect(res.status).toBeLessThan(500);
    });

    it("refuses generations(userId:) with a NUL character with BAD_USER_INPUT, not an internal error", async () => {
      const res = await gql(
        server.url,
        `query($userId: ID) { generations(userId: $userId) { totalCount } }`,
        { userId: "v\u0000user" },
        key,
      );
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("userId");
    });

    it('answers generation(id: "not-a-uuid") with null, not an error', async () => {
      const res = await gql(server.url, GET, { id: "not-a-uuid" }, key);
      expect(res.status).toBe(200);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
    });

    it("answers generation for an unknown UUID with null", async () => {
      const res = await gql(server.url, GET, { id: randomUUID() }, key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
    });
  });

  describe("estimateCost", () => {
    it.each(INVALID.filter(([, , field]) => field !== "userId"))(
      "refuses %s with BAD_USER_INPUT naming the field, and stores nothing",
      async (_name, input, field) => {
        const before = await stored();
        const res = await gql(server.url, ESTIMATE, { input }, key);
        expect(errorCode(res)).toBe("BAD_USER_INPUT");
        expect(res.errors![0]!.extensions!.field).toBe(field);
        expect(await stored()).toEqual(before);
      },
    );

    it("prices a per-megapixel model at 2048x2048 at 4.1943 times its base", async () => {
      const before = await stored();
      const res = await gql(
        server.url,
        ESTIMATE,
        { input: { ...IMAGE, width: 2048, height: 2048 } },
        key,
      );
      expect(res.errors).toBeUndefined();
      expect(res.data!.estimateCost).toMatchObject({
        model: "sim-image-standard",
        estimatedCostUsd: 0.104858,
        breakdown: {
          baseCostUsd: 0.025,
          resolutionMultiplier: 4.1943,
          durationMultiplier: 1,
          batchDiscount: 0,
        },
      });
      expect(res.data!.estimateCost.estimatedSeconds).toBeGreaterThan(0);
      expect(await stored()).toEqual(before);
    });

    it("halves the price for BATCH priority", async () => {
      const res = await gql(
        server.url,
        ESTIMATE,
        { input: { ...IMAGE, width: 2048, height: 2048, priority: "BATCH" } },
        key,
      );
      expect(res.data!.estimateCost.breakdown.batchDiscount).toBe(0.5);
      expect(res.data!.estimateCost.estimatedCostUsd).toBe(0.052429);
    });

    it("multiplies a per-second model's price by the duration", async () => {
      const res = await gql(server.url, ESTIMATE, { input: { ...VIDEO, durationSeconds: 4 } }, key);
      expect(res.data!.estimateCost).toMatchObject({
        model: "sim-video",
        estimatedCostUsd: 0.2,
        breakdown: { baseCostUsd: 0.05, durationMultiplier: 4, resolutionMultiplier: 1 },
      });
    });

    it("needs no userId, since it charges nobody", async () => {
      const res = await gql(server.url, ESTIMATE, { input: { ...IMAGE, userId: undefined } }, key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.estimateCost.model).toBe("sim-image-standard");
    });

    it("refuses estimateCost without credentials with UNAUTHENTICATED", async () => {
      const res = await gql(server.url, ESTIMATE, { input: IMAGE });
      expect(errorCode(res)).toBe("UNAUTHENTICATED");
    });
  });
});
