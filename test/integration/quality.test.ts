import { startSimServer, type SimServer } from "../../src/providers/simulated/sim-server";
import { PassRateRepository } from "../../src/quality";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id cached } }`;
const FIELDS = `status provider cached
  quality { passed score checks { name passed score details } }
  attempts { provider status error quality { passed checks { name passed details } } }
  error { code message retryable }`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { ${FIELDS} } } }`;
const TOKEN = "sim-token-quality";
const SECRET = "whsec_" + Buffer.from("quality webhook secret").toString("base64");

type Media = "IMAGE" | "VIDEO" | "AUDIO";
const REQUEST: Record<Media, Record<string, unknown>> = {
  IMAGE: { mediaType: "IMAGE", width: 128, height: 96 },
  VIDEO: { mediaType: "VIDEO", width: 64, height: 64, durationSeconds: 2 },
  AUDIO: { mediaType: "AUDIO", durationSeconds: 3 },
};

describe("every output passes the quality gate before it is accepted", () => {
  let env: TestEnv;
  let primary: SimServer;
  let fallback: SimServer;
  let server: TestServer;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const sim = {
      port: 0,
      apiToken: TOKEN,
      webhookSecret: SECRET,
      latencyMs: 50,
      latencyJitter: 0,
      progressSteps: 1,
    };
    primary = await startSimServer(sim);
    // The good provider behind the bad one: it renders every prompt well.
    fallback = await startSimServer({ ...sim, defects: false });
    server = await startTestServer(env, {
      overrides: {
        SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
        SIM_PROVIDER_TOKEN: TOKEN,
        SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
        MAX_ATTEMPTS: "2",
        // Rejected outputs count against the primary's circuit; keep it closed for the suite.
        CIRCUIT_MIN_REQUESTS: "1000",
        POLL_MIN_MS: "20",
        POLL_MAX_MS: "100",
      },
    });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);
  });

  afterAll(async () => {
    await socket.dispose();
    await server.stop();
    await Promise.all([primary.close(), fallback.close()]);
    await env.cleanup();
  });

  async function finish(media: Media, prompt: string) {
    const res = await gql(
      server.url,
      GENERATE,
      { input: { userId: "u", prompt, ...REQUEST[media] } },
      key,
    );
    expect(res.errors).toBeUndefined();
    const done = await socket
      .subscribe(WATCH, { id: res.data!.generate.id })
      .until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
    return done.generationUpdated.generation;
  }

  it("accepts a good output and stores its report", async () => {
    const g = await finish("IMAGE", "a red fox in the snow");
    expect(g).toMatchObject({ status: "SUCCEEDED", provider: "simulated" });
    expect(g.quality).toMatchObject({ passed: true, score: 1 });
    expect(g.quality.checks).toEqual([
      expect.objectContaining({
        name: "technical",
        passed: true,
        details: expect.objectContaining({ contentType: "image/png", width: 128, height: 96 }),
      }),
    ]);
    expect(g.attempts[0].quality.passed).toBe(true);
  });

  it.each([
    ["IMAGE", "[sim:black]", /content: a black frame/],
    ["IMAGE", "[sim:blank]", /content: a single colour/],
    ["IMAGE", "[sim:truncated]", /complete: IDAT chunk cut off/],
    ["IMAGE", "[sim:wrong-size]", /size: 64x48, 128x96 asked/],
    ["IMAGE", "[sim:wrong-type]", /type: output is audio\/wav, not image media/],
    ["VIDEO", "[sim:black]", /content: a black frame/],
    ["AUDIO", "[sim:short-audio]", /duration: 0.75 s long, 3 s asked/],
    ["AUDIO", "[sim:blank]", /content: silence/],
  ] as const)(
    "falls over to the next provider when the first returns %s %s",
    async (media, directive, reason) => {
      const g = await finish(media, `a lighthouse at dusk ${directive}`);
      expect(g).toMatchObject({ status: "SUCCEEDED", provider: "simulated-2", error: null });
      const [rejected, accepted] = g.attempts;
      expect(rejected).toMatchObject({ provider: "simulated", status: "FAILED" });
      expect(rejected.error).toMatch(/^output rejected by the quality gate/);
      expect(rejected.quality.passed).toBe(false);
      expect(rejected.quality.checks[0].details.reason).toMatch(reason);
      expect(accepted).toMatchObject({ provider: "simulated-2", status: "SUCCEEDED" });
      expect(g.quality.passed).toBe(true);
    },
  );

  it("fails with QUALITY_FAILED when no provider is left, and caches nothing", async () => {
    fallback.setBehaviour({ defects: true });
    try {
      const g = await finish("IMAGE", "a quiet harbour [sim:black]");
      expect(g.status).toBe("FAILED");
      expect(g.error).toMatchObject({ code: "QUALITY_FAILED", retryable: true });
      expect(g.error.message).toMatch(/technical: content: a black frame/);
      expect(g.quality).toBeNull();
      expect(g.attempts.map((a: { provider: string }) => a.provider)).toEqual([
        "simulated",
        "simulated-2",
      ]);
      // Nothing was remembered: the same request runs again instead of hitting the cache.
      const again = await gql(
        server.url,
        GENERATE,
        { input: { userId: "u", prompt: "a quiet harbour [sim:black]", ...REQUEST.IMAGE } },
        key,
      );
      expect(again.data!.generate.cached).toBe(false);
      const rerun = await socket
        .subscribe(WATCH, { id: again.data!.generate.id })
        .until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
      expect(rerun.generationUpdated.generation.error.code).toBe("QUALITY_FAILED");
    } finally {
      fallback.setBehaviour({ defects: false });
    }
  });

  it("counts every judged attempt per model for the pass rates selection reads", async () => {
    const counts = await new PassRateRepository(server.app.db.dataSource).recent(1);
    const byModel = Object.fromEntries(counts);
    // The images above: 1 good, 5 rejected then accepted, twice 2 rejected (both providers).
    expect(byModel["sim-image-standard"]).toEqual({ judged: 15, passed: 6 });
    expect(byModel["sim-video"]).toEqual({ judged: 2, passed: 1 });
    expect(byModel["sim-audio"]).toEqual({ judged: 4, passed: 2 });
  });
});
