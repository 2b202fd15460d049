import { startSimServer, type SimServer } from "../../src/providers/simulated/sim-server";
import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { status provider attempts { provider status error } error { code } } }
}`;
const HEALTH = `{ providerHealth { provider circuit requests failures successRate openedAt lastError p50LatencyMs } }`;
const TOKEN = "sim-token-resilience";
const SECRET = "whsec_" + Buffer.from("resilience webhook secret").toString("base64");
const IMAGE = (prompt: string) => ({
  userId: "u",
  mediaType: "IMAGE",
  prompt,
  width: 64,
  height: 64,
});

describe("fallback across providers behind shared circuit breakers", () => {
  let env: TestEnv;
  let primary: SimServer;
  let fallback: SimServer;
  let server: TestServer;
  let key: string;
  let admin: string;
  let socket: WsClient;
  let adminSocket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const sim = {
      port: 0,
      apiToken: TOKEN,
      webhookSecret: SECRET,
      latencyMs: 150,
      latencyJitter: 0,
      progressSteps: 1,
    };
    primary = await startSimServer(sim);
    fallback = await startSimServer(sim);
    server = await startTestServer(env, {
      overrides: {
        SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
        SIM_PROVIDER_TOKEN: TOKEN,
        SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
        CIRCUIT_MIN_REQUESTS: "3",
        CIRCUIT_FAILURE_THRESHOLD: "0.5",
        CIRCUIT_COOLDOWN_SECONDS: "3",
        POLL_MIN_MS: "20",
        POLL_MAX_MS: "100",
        PROVIDER_TIMEOUT_SECONDS: "1",
      },
    });
    admin = await adminKey(server);
    key = (await partner(server, admin)).key;
    socket = wsClient(server.url, key);
    adminSocket = wsClient(server.url, admin);
  });

  afterAll(async () => {
    await socket.dispose();
    await adminSocket.dispose();
    await server.stop();
    await Promise.all([primary.close(), fallback.close()]);
    await env.cleanup();
  });

  async function finish(prompt: string) {
    const res = await gql(server.url, GENERATE, { input: IMAGE(prompt) }, key);
    expect(res.errors).toBeUndefined();
    const done = await socket
      .subscribe(WATCH, { id: res.data!.generate.id })
      .until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
    return done.generationUpdated.generation;
  }

  it("uses the primary while it is healthy", async () => {
    const g = await finish("healthy primary");
    expect(g.status).toBe("SUCCEEDED");
    expect(g.provider).toBe("simulated");
  });

  it("moves traffic to the fallback when the primary is down, opens its circuit, then closes it once it recovers", async () => {
    const transitions = adminSocket.subscribe(
      `subscription { providerHealthChanged { provider circuit openedAt } }`,
    );
    primary.setBehaviour({ mode: "down" });

    // Each generation still finishes: its failed attempt at the primary falls over.
    for (let i = 0; i < 3; i++) {
      const g = await finish(`primary down ${i}`);
      expect(g.status).toBe("SUCCEEDED");
      expect(g.provider).toBe("simulated-2");
    }
    const opened = await transitions.until((m) => m.providerHealthChanged.circuit === "OPEN");
    expect(opened.providerHealthChanged).toMatchObject({ provider: "simulated" });

    // An open circuit is skipped: no attempt goes to the primary any more.
    const skipped = await finish("primary skipped");
    expect(skipped.attempts.map((a: { provider: string }) => a.provider)).toEqual(["simulated-2"]);

    const health = await gql(server.url, HEALTH, {}, admin);
    const primaryHealth = health.data!.providerHealth.find(
      (h: { provider: string }) => h.provider === "simulated",
    );
    expect(primaryHealth).toMatchObject({ circuit: "OPEN" });
    expect(primaryHealth.failures).toBeGreaterThanOrEqual(2);
    expect(primaryHealth.lastError).toMatch(/503|PROVIDER_ERROR/);

    // Recovered: after the cool-down the next generation's attempt is the one probe sent to the
    // primary, and its success closes the circuit (generations before the cool-down ends still
    // go to the fallback, so keep asking until one has been the probe).
    primary.setBehaviour({ mode: "normal" });
    let closed = false;
    for (let i = 0; i < 60 && !closed; i++) {
      await finish(`probe ${i}`);
      const now = await gql(server.url, HEALTH, {}, admin);
      closed =
        now.data!.providerHealth.find((h: { provider: string }) => h.provider === "simulated")
          .circuit === "CLOSED";
    }
    expect(closed).toBe(true);
    const back = await finish("primary back");
    expect(back.provider).toBe("simulated");
    await transitions.until((m) => m.providerHealthChanged.circuit === "CLOSED");
    expect(transitions.messages.map((m) => m.providerHealthChanged.circuit)).toEqual([
      "OPEN",
      "HALF_OPEN",
      "CLOSED",
    ]);
    transitions.stop();
  });

  it("falls over when the primary takes jobs but never finishes them", async () => {
    primary.setBehaviour({ latencyMs: 600_000 });
    try {
      const g = await finish("primary hangs");
      expect(g.status).toBe("SUCCEEDED");
      expect(g.provider).toBe("simulated-2");
      expect(
        g.attempts.map((a: { provider: string; error: string | null }) => [
          a.provider,
          a.error?.slice(0, 13) ?? null,
        ]),
      ).toEqual([
        ["simulated", "no result fro"],
        ["simulated-2", null],
      ]);
    } finally {
      primary.setBehaviour({ latencyMs: 150 });
    }
  });

  it("honours the primary's 429s without opening its circuit", async () => {
    primary.setBehaviour({ mode: "rate-limited", retryAfterSeconds: 2 });
    try {
      for (let i = 0; i < 4; i++) {
        const g = await finish(`primary throttled ${i}`);
        expect(g.status).toBe("SUCCEEDED");
        expect(g.provider).toBe("simulated-2");
      }
      const health = await gql(server.url, HEALTH, {}, admin);
      const p = health.data!.providerHealth.find(
        (h: { provider: string }) => h.provider === "simulated",
      );
      expect(p.circuit).toBe("CLOSED");
      expect(p.lastError).toMatch(/RATE_LIMITED/);
    } finally {
      primary.setBehaviour({ mode: "normal" });
    }
  });

  it("charges every generation once, whatever it went through", async () => {
    const rows = await server.app.db.dataSource.query(
      `SELECT g.id, count(u.id)::int AS usage FROM generations g LEFT JOIN usage_records u ON u.generation_id = g.id
        WHERE g.status = 'SUCCEEDED' GROUP BY g.id HAVING count(u.id) <> 1`,
    );
    expect(rows).toEqual([]);
  });

  it("shows provider health to ADMIN only", async () => {
    expect(errorCode(await gql(server.url, HEALTH, {}, key))).toBe("FORBIDDEN");
    expect(errorCode(await gql(server.url, HEALTH, {}))).toBe("UNAUTHENTICATED");
    const sub = socket.subscribe(`subscription { providerHealthChanged { provider } }`);
    expect(await sub.error()).toEqual([
      expect.objectContaining({ extensions: expect.objectContaining({ code: "FORBIDDEN" }) }),
    ]);
  });
});

describe("load shedding", () => {
  let env: TestEnv;
  let server: TestServer;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, {
      worker: false,
      overrides: {
        RATE_LIMIT_BURST: "3",
        RATE_LIMIT_PER_SECOND: "0.01",
        MAX_QUEUED_PER_PRIORITY: "4",
      },
    });
  });

  afterAll(async () => {
    await server.stop();
    await env.cleanup();
  });

  it("answers RATE_LIMITED with retryAfterSeconds once a key spends its burst, per key", async () => {
    const admin = await adminKey(server);
    const a = (await partner(server, admin, "a")).key;
    const b = (await partner(server, admin, "b")).key;
    for (let i = 0; i < 3; i++)
      expect(
        (await gql(server.url, GENERATE, { input: IMAGE(`burst ${i}`) }, a)).errors,
      ).toBeUndefined();
    const limited = await gql(server.url, GENERATE, { input: IMAGE("one too many") }, a);
    expect(errorCode(limited)).toBe("RATE_LIMITED");
    expect(limited.errors![0]!.extensions!.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(
      (await gql(server.url, GENERATE, { input: IMAGE("another key") }, b)).errors,
    ).toBeUndefined();
  });

  it("refuses with SERVICE_UNAVAILABLE when a priority's queue is full, not the others", async () => {
    const admin = await adminKey(server);
    // Nothing consumes the queue here; four are queued by now (three of a's, one of b's).
    const c = (await partner(server, admin, "c")).key;
    const full = await gql(server.url, GENERATE, { input: IMAGE("standard is full") }, c);
    expect(errorCode(full)).toBe("SERVICE_UNAVAILABLE");
    const interactive = await gql(
      server.url,
      GENERATE,
      { input: { ...IMAGE("interactive has room"), priority: "INTERACTIVE" } },
      c,
    );
    expect(interactive.errors).toBeUndefined();
  });
});
