import http from "node:http";
import Redis from "ioredis";
import { createLogger } from "../../src/common/logger";
import type { NewAlert } from "../../src/observability/alert.service";
import { EMPTY_BASELINE, type BaselineParams } from "../../src/observability/anomaly.baseline";
import { AnomalyDetector, type AnomalyOptions } from "../../src/observability/anomaly.detector";
import { InMemoryBaselineStore } from "../../src/observability/anomaly.memory-store";
import { RedisBaselineStore } from "../../src/observability/anomaly.redis-store";
import { deferred } from "../../src/common/deferred";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import { freePort } from "../helpers/ports";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const HOUR = 3_600_000;
const OPTIONS: AnomalyOptions = {
  warningSigma: 3,
  criticalSigma: 5,
  alpha: 0.05,
  warmupSamples: 20,
  cooldownMs: 600_000,
  errorWindow: 20,
  cacheWindow: 100,
};
/** Deterministic noise in [-1, 1]. */
const noise = (i: number) => Math.sin(i * 2.399);

describe("anomaly detection on baselines shared through Redis", () => {
  const prefix = uniquePrefix();
  const connections: Redis[] = [];
  const clock = { now: 1000 * HOUR };

  /** One detector "process": its own Redis connection, the shared prefix and clock. */
  function detector(opts: Partial<AnomalyOptions> = {}) {
    const redis = new Redis(TEST_REDIS_URL);
    connections.push(redis);
    const alerts: NewAlert[] = [];
    const d = new AnomalyDetector(
      new RedisBaselineStore(redis, prefix),
      { raise: (a) => Promise.resolve(void alerts.push(a)) },
      { ...OPTIONS, ...opts },
      createLogger("silent"),
      () => clock.now,
    );
    return { d, alerts };
  }

  afterAll(async () => {
    await Promise.all(connections.map((c) => c.quit()));
    await deletePrefix(prefix);
  });

  it("folds samples exactly as the in-memory store does (the Lua and TypeScript agree)", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    connections.push(redis);
    const stores = [new RedisBaselineStore(redis, prefix), new InMemoryBaselineStore()];
    const p: BaselineParams = {
      alpha: 0.1,
      warmupSamples: 8,
      clampSigma: 3,
      minSigma: 0.5,
      minSigmaRatio: 0.05,
      rateWindow: 0,
    };
    const rate: BaselineParams = { ...p, minSigma: 0, minSigmaRatio: 0, rateWindow: 20 };
    const xs = Array.from({ length: 60 }, (_, i) =>
      i % 17 === 16 ? 400 : 100 + 7 * noise(i) + (i > 40 ? 30 : 0),
    );
    for (const x of xs) {
      const [r, m] = await Promise.all(stores.map((s) => s.fold("parity:value", x, p)));
      expect(r!.samples).toBe(m!.samples);
      expect(r!.mean).toBeCloseTo(m!.mean, 9);
      expect(r!.variance).toBeCloseTo(m!.variance, 6);
      const rates = await Promise.all(
        stores.map((s) => s.fold("parity:rate", Math.abs(noise(x)) / 4, rate)),
      );
      expect(rates[0]!.mean).toBeCloseTo(rates[1]!.mean, 12);
      expect(rates[0]!.variance).toBeCloseTo(rates[1]!.variance, 12);
    }
    const [r, m] = await Promise.all(stores.map((s) => s.read("parity:value")));
    expect(r).toEqual({
      ...m,
      mean: expect.closeTo(m!.mean, 9),
      variance: expect.closeTo(m!.variance, 6),
    });
    expect(await stores[0]!.read("parity:nothing")).toEqual(EMPTY_BASELINE);
    // Windows and buckets close at the same points.
    for (let i = 0; i < 5; i++) {
      const w = await Promise.all(stores.map((s) => s.addToWindow("parity:w", i % 2, 1, 3)));
      expect(w[0]).toEqual(w[1]);
    }
    for (const [bucket, amount] of [
      [5, 1.5],
      [5, 0.25],
      [4, 1],
      [7, 2],
    ] as const) {
      const b = await Promise.all(stores.map((s) => s.addToBucket("parity:b", bucket, amount)));
      expect(b[0]).toEqual(b[1]);
    }
  });

  it("latency: nothing during the warm-up or for noise within 2σ, then exactly one critical alert for a spike", async () => {
    const { d, alerts } = detector();
    for (let i = 0; i < 19; i++)
      await d.observeLatency("lat-model", 2000 * Math.exp(0.04 * noise(i)));
    await d.observeLatency("lat-model", 30_000); // the 20th sample: still warming up
    expect(alerts).toEqual([]);
    // Noise of a steady spread (about ×1.3 either way): every sample within 2σ of the baseline.
    for (let i = 0; i < 200; i++) {
      const x = 2000 * Math.exp(0.25 * noise(i));
      const b = await d.baseline("latency", "lat-model");
      if (i >= 100) expect(Math.abs(Math.log(x) - b.mean) / b.sigma).toBeLessThan(2);
      await d.observeLatency("lat-model", x);
    }
    expect(alerts).toEqual([]);
    await d.observeLatency("lat-model", 9000);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: "LATENCY_ANOMALY",
      severity: "critical",
      accountId: null,
      data: { model: "lat-model", latencyMs: 9000 },
    });
  });

  it("latency: a sample between 3σ and 5σ is a warning", async () => {
    const { d, alerts } = detector();
    for (let i = 0; i < 40; i++)
      await d.observeLatency("warn-model", 500 * Math.exp(0.02 * noise(i)));
    const b = await d.baseline("latency", "warn-model");
    await d.observeLatency("warn-model", Math.exp(b.mean + 4 * b.sigma));
    expect(alerts.map((a) => a.severity)).toEqual(["warning"]);
  });

  it("error rate: steady windows of attempts, then one window of failures raises exactly one critical alert", async () => {
    const { d, alerts } = detector();
    for (let w = 0; w < 25; w++) {
      for (let i = 0; i < 20; i++) await d.observeAttempt("flaky-provider", i >= w % 3);
    }
    expect(alerts).toEqual([]);
    for (let i = 0; i < 20; i++) await d.observeAttempt("flaky-provider", i % 2 === 0);
    for (let i = 0; i < 20; i++) await d.observeAttempt("flaky-provider", i % 2 === 0);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: "ERROR_RATE_ANOMALY",
      severity: "critical",
      accountId: null,
      data: { provider: "flaky-provider", failures: 10, attempts: 20 },
    });
  });

  it("spend: past hours make the baseline; a spiking hour raises exactly one alert, a later incident another", async () => {
    const { d, alerts } = detector({ cooldownMs: 60_000 });
    const account = "0b6a6f6e-0000-4000-8000-000000000001";
    const at = (hour: number, minute: number) =>
      (clock.now = (1000 + hour) * HOUR + minute * 60_000);
    for (let h = 0; h < 25; h++) {
      for (let c = 0; c < 4; c++) {
        at(h, 10 * c);
        await d.observeSpend(account, 0.25 + 0.02 * noise(4 * h + c));
      }
    }
    expect(alerts).toEqual([]);
    at(25, 5);
    await d.observeSpend(account, 1);
    at(25, 6);
    await d.observeSpend(account, 3); // 4 USD in the hour against about 1 ± 0.1
    at(25, 30);
    await d.observeSpend(account, 3);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: "SPEND_ANOMALY",
      severity: "critical",
      accountId: account,
      data: { spentUsd: 4, hourStart: new Date((1000 + 25) * HOUR).toISOString() },
    });
    // Back to normal for a few hours, then a new incident.
    for (let h = 26; h < 30; h++) {
      at(h, 0);
      await d.observeSpend(account, 1);
    }
    at(30, 0);
    await d.observeSpend(account, 5);
    expect(alerts).toHaveLength(2);
  });

  it("cool-down: repeats of an incident are one alert until it has passed", async () => {
    const { d, alerts } = detector({ cooldownMs: 600_000 });
    for (let i = 0; i < 30; i++)
      await d.observeLatency("cool-model", 1000 * Math.exp(0.03 * noise(i)));
    for (let i = 0; i < 5; i++) {
      await d.observeLatency("cool-model", 20_000);
      clock.now += 60_000;
    }
    expect(alerts).toHaveLength(1);
    clock.now += 600_000;
    await d.observeLatency("cool-model", 20_000);
    expect(alerts).toHaveLength(2);
  });

  it("cool-down: a critical breaks through a warning's, once, in the Redis store", async () => {
    const { d, alerts } = detector({ cooldownMs: 600_000 });
    for (let i = 0; i < 30; i++)
      await d.observeLatency("escalating-model", 1000 * Math.exp(0.03 * noise(i)));
    const at = async (sigmas: number) => {
      const b = await d.baseline("latency", "escalating-model");
      await d.observeLatency("escalating-model", Math.exp(b.mean + sigmas * b.sigma));
    };
    await at(4);
    clock.now += 60_000;
    await at(4);
    await at(12);
    clock.now += 60_000;
    await at(12);
    await at(4);
    expect(alerts.map((a) => a.severity)).toEqual(["warning", "critical"]);
  });

  it("two processes share one baseline, close each window once and raise one alert between them", async () => {
    const a = detector();
    const b = detector();
    // Warm-up split between the two: neither alone has seen 20 samples, together they have.
    for (let i = 0; i < 30; i++) {
      await (i % 2 ? a : b).d.observeLatency("shared-model", 1500 * Math.exp(0.03 * noise(i)));
    }
    expect(await a.d.baseline("latency", "shared-model")).toMatchObject({ samples: 30 });
    // Concurrent attempts from both: 80 of them are exactly 4 windows of 20.
    await Promise.all(
      Array.from({ length: 80 }, (_, i) =>
        (i % 2 ? a : b).d.observeAttempt("shared-provider", true),
      ),
    );
    expect(await b.d.baseline("error_rate", "shared-provider")).toMatchObject({ samples: 4 });
    // The same spike seen by both at once is one incident.
    await Promise.all([
      a.d.observeLatency("shared-model", 30_000),
      b.d.observeLatency("shared-model", 30_000),
    ]);
    expect([...a.alerts, ...b.alerts]).toHaveLength(1);
    expect(await a.d.baseline("latency", "shared-model")).toMatchObject({ samples: 32 });
  });
});

describe("anomaly alerts through a real server", () => {
  let env: TestEnv;
  let server: TestServer;
  let receiver: http.Server;
  const posts: Array<{ path: string; body: any }> = [];
  const sockets: WsClient[] = [];
  const twoPosts = deferred<void>();

  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        posts.push({ path: req.url ?? "", body: JSON.parse(body) });
        res.writeHead(200).end();
        if (posts.length === 2) twoPosts.resolve();
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => receiver.listen(port, "127.0.0.1", r));
    env = await createTestEnv();
    server = await startTestServer(env, {
      overrides: {
        CALLBACKS_ALLOW_PRIVATE: "true",
        SIM_LATENCY_MS: "100",
        ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/operators`,
        ANOMALY_WARMUP_SAMPLES: "5",
      },
    });
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await server.stop();
    await env.cleanup();
    await new Promise((r) => receiver.close(r));
  });

  it("a slow, dear generation raises a latency alert for operators and a spend alert for its account, stored, live and delivered", async () => {
    const admin = await adminKey(server);
    const acme = await partner(server, admin, "anomaly-acme");
    const hook = await gql(
      server.url,
      `mutation($url: String) { setAlertWebhook(url: $url) }`,
      { url: `${receiverUrl()}/account` },
      acme.key,
    );
    expect(hook.errors).toBeUndefined();

    // Another process's history, in the same Redis: the model used to answer in about 20 ms,
    // and the account used to spend 2 cents in an hour.
    const redis = new Redis(TEST_REDIS_URL);
    const now = Date.now();
    const clock = { now: now - 8 * HOUR };
    const history = new AnomalyDetector(
      new RedisBaselineStore(redis, env.redisPrefix),
      { raise: () => Promise.reject(new Error("history raises nothing")) },
      { ...OPTIONS, warmupSamples: 5 },
      createLogger("silent"),
      () => clock.now,
    );
    try {
      for (let i = 0; i < 6; i++) {
        await history.observeLatency("sim-image-pro", 20);
        clock.now = now - (7 - i) * HOUR;
        await history.observeSpend(acme.accountId, 0.02);
      }
    } finally {
      redis.disconnect();
    }

    const ws = wsClient(server.url, admin);
    sockets.push(ws);
    const live = ws.subscribe(`subscription { alertRaised { id kind severity message data } }`);
    // Live once the server's Redis subscription to every alert exists.
    const probe = new Redis(TEST_REDIS_URL);
    try {
      for (;;) {
        const [, n] = (await probe.pubsub("NUMSUB", `${env.redisPrefix}:alerts:all`)) as [
          string,
          number,
        ];
        if (n > 0) break;
      }
    } finally {
      probe.disconnect();
    }

    // sim-image-pro at 1024×1024 costs about 0.058 USD: some 3.8σ over 0.02 ± 0.01.
    const res = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`,
      {
        input: {
          userId: "anomaly-user",
          mediaType: "IMAGE",
          model: "sim-image-pro",
          prompt: "a lighthouse that takes its time",
          cache: "BYPASS",
        },
      },
      acme.key,
    );
    expect(res.errors).toBeUndefined();

    await live.until((_, all) => all.length >= 2);
    expect(live.messages).toHaveLength(2);
    const byKind = Object.fromEntries(
      live.messages.map((m) => [m.alertRaised.kind, m.alertRaised]),
    );
    expect(byKind.LATENCY_ANOMALY).toMatchObject({
      severity: "critical",
      data: { metric: "latency", model: "sim-image-pro", usualMs: 20 },
    });
    expect(byKind.SPEND_ANOMALY).toMatchObject({
      severity: "warning",
      data: { metric: "spend", key: acme.accountId },
    });

    // Operators see both; the partner only its account's.
    const listed = await gql(server.url, `{ alerts(first: 10) { id kind severity } }`, {}, admin);
    expect(listed.data!.alerts.map((a: { kind: string }) => a.kind).sort()).toEqual([
      "LATENCY_ANOMALY",
      "SPEND_ANOMALY",
    ]);
    const own = await gql(server.url, `{ alerts(first: 10) { id kind } }`, {}, acme.key);
    expect(own.data!.alerts).toEqual([{ id: byKind.SPEND_ANOMALY.id, kind: "SPEND_ANOMALY" }]);

    // The system alert went to the operators' webhook, the account's to its own.
    await twoPosts.promise;
    const sent = Object.fromEntries(posts.map((p) => [p.path, p.body]));
    expect(sent["/operators"]).toMatchObject({
      text: expect.stringMatching(/^\[critical\] Model sim-image-pro took/),
      alert: { id: byKind.LATENCY_ANOMALY.id, kind: "LATENCY_ANOMALY", accountId: null },
    });
    expect(sent["/account"]).toMatchObject({
      text: expect.stringMatching(/^\[warning\] The account has spent/),
      alert: { id: byKind.SPEND_ANOMALY.id, kind: "SPEND_ANOMALY", accountId: acme.accountId },
    });
    live.stop();
  });

  function receiverUrl(): string {
    const { port } = receiver.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }
});
