import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const STATS = `query($w: StatsWindow) { operatorStats(window: $w) {
  window bucketSeconds from to queued processing spendUsd generations cacheHits cacheHitRate errorRate
  series { start spendUsd generations cacheHits succeeded failed errorRate p50LatencyMs p95LatencyMs }
} }`;

describe("operatorStats: the dashboard's numbers, computed in SQL", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let key: string;
  let ws: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { overrides: { MAX_ATTEMPTS: "1" } });
    admin = await adminKey(server);
    key = (await partner(server, admin)).key;
    ws = wsClient(server.url, key);
  });

  afterAll(async () => {
    await ws?.dispose();
    await server?.stop();
    await env?.cleanup();
  });

  async function generateAndFinish(prompt: string): Promise<string> {
    const res = await gql<{ generate: { id: string; status: string } }>(
      server.url,
      `mutation($in: GenerateInput!) { generate(input: $in) { id status } }`,
      { in: { userId: "u1", mediaType: "IMAGE", prompt, width: 256, height: 256 } },
      key,
    );
    const { id } = res.data!.generate;
    const sub = ws.subscribe(
      `subscription($id: ID!) { generationUpdated(id: $id) { generation { status } } }`,
      {
        id,
      },
    );
    const last = await sub.until((m) =>
      ["SUCCEEDED", "FAILED", "CANCELED"].includes(m.generationUpdated.generation.status),
    );
    sub.stop();
    return last.generationUpdated.generation.status;
  }

  it("refuses anyone but ADMIN", async () => {
    const res = await gql(server.url, STATS, {}, key);
    expect(errorCode(res)).toBe("FORBIDDEN");
  });

  it("counts spend, cache hits, failures and latency of the last hour in 5-minute buckets", async () => {
    expect(await generateAndFinish("a red fox")).toBe("SUCCEEDED");
    expect(await generateAndFinish("a red fox")).toBe("SUCCEEDED"); // exact cache hit
    expect(await generateAndFinish("a blue whale")).toBe("SUCCEEDED");
    expect(await generateAndFinish("a broken one [sim:fail]")).toBe("FAILED");

    const res = await gql(server.url, STATS, {}, admin);
    expect(res.errors).toBeUndefined();
    const s = res.data!.operatorStats;
    expect(s.window).toBe("HOUR");
    expect(s.bucketSeconds).toBe(300);
    expect(s.series).toHaveLength(12);
    expect(new Date(s.to).getTime() - new Date(s.from).getTime()).toBe(3_600_000);
    expect(s.generations).toBe(3);
    expect(s.cacheHits).toBe(1);
    expect(s.cacheHitRate).toBeCloseTo(1 / 3);
    expect(s.errorRate).toBeCloseTo(1 / 4);
    expect(s.queued).toBe(0);
    expect(s.processing).toBe(0);

    const usage = await gql(
      server.url,
      `query($from: DateTime!, $to: DateTime!) { usage(from: $from, to: $to) { totalCostUsd } }`,
      { from: s.from, to: s.to },
      admin,
    );
    expect(s.spendUsd).toBeCloseTo(usage.data!.usage.totalCostUsd, 6);
    expect(s.spendUsd).toBeGreaterThan(0);

    const busy = s.series.filter((b: any) => b.generations > 0 || b.failed > 0);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    const latencies = busy.filter((b: any) => b.p50LatencyMs != null);
    expect(latencies.length).toBeGreaterThanOrEqual(1);
    for (const b of latencies) expect(b.p95LatencyMs).toBeGreaterThanOrEqual(b.p50LatencyMs);
    const empty = s.series.find(
      (b: any) => b.generations === 0 && b.failed === 0 && b.succeeded === 0,
    );
    expect(empty).toMatchObject({ spendUsd: 0, errorRate: null, p50LatencyMs: null });
  });

  it("gives the last day in 24 hourly buckets", async () => {
    const res = await gql(server.url, STATS, { w: "DAY" }, admin);
    const s = res.data!.operatorStats;
    expect(s.bucketSeconds).toBe(3600);
    expect(s.series).toHaveLength(24);
    expect(s.generations).toBe(3);
  });
});
