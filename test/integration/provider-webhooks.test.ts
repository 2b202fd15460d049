import {
  FakeReplicate,
  FAKE_REPLICATE_TOKEN,
  FAKE_WEBHOOK_SECRET,
  signWebhook,
} from "../helpers/fake-replicate";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import { freePort } from "../helpers/ports";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status model } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type
    generation { status progress provider error { code retryable } outputs { url contentType } attempts { status provider error } }
  }
}`;
const IMAGE = {
  userId: "u",
  mediaType: "IMAGE",
  prompt: "a red kite",
  model: "flux-schnell",
  width: 512,
  height: 512,
  // Every test here is about reaching the provider: an identical earlier result must not answer.
  cache: "BYPASS",
};

describe("a real provider protocol (Replicate) end to end", () => {
  let env: TestEnv;
  let fake: FakeReplicate;
  const servers: TestServer[] = [];
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
  });

  beforeEach(async () => {
    // flux-schnell falls back to flux-dev: the fake serves both.
    fake = await FakeReplicate.start({
      models: ["black-forest-labs/flux-schnell", "black-forest-labs/flux-dev"],
    });
  });

  afterEach(async () => {
    await Promise.all(sockets.splice(0).map((s) => s.dispose()));
    for (const s of servers.splice(0)) await s.stop();
    await fake.close();
  });

  afterAll(async () => {
    await env.cleanup();
  });

  async function start(overrides: Record<string, string> = {}) {
    const server = await startTestServer(env, {
      overrides: {
        REPLICATE_API_TOKEN: FAKE_REPLICATE_TOKEN,
        REPLICATE_BASE_URL: fake.url,
        REPLICATE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET,
        ...overrides,
      },
    });
    servers.push(server);
    const key = (await partner(server, await adminKey(server))).key;
    const socket = wsClient(server.url, key);
    sockets.push(socket);
    return { server, key, socket };
  }

  /** A server whose provider webhooks reach it: its port is chosen before it starts. */
  async function startWithWebhooks(overrides: Record<string, string> = {}) {
    const port = await freePort();
    return start({
      PORT: String(port),
      WEBHOOK_BASE_URL: `http://127.0.0.1:${port}`,
      // Webhooks alone drive the job: the backstop check would come only after a minute.
      WEBHOOK_BACKSTOP_POLL_MS: "60000",
      ...overrides,
    });
  }

  async function submitted(server: TestServer, key: string, socket: WsClient, input = IMAGE) {
    const res = await gql(server.url, GENERATE, { input }, key);
    expect(res.errors).toBeUndefined();
    const id = res.data!.generate.id as string;
    const sub = socket.subscribe(WATCH, { id });
    await sub.until((m) => m.generationUpdated.generation.status === "PROCESSING");
    // The provider has the job once its id is recorded on the attempt.
    let predictionId: string | undefined;
    while (!predictionId) {
      const [row] = await server.app.db.dataSource.query(
        `SELECT provider_job_id FROM attempts WHERE generation_id = $1 ORDER BY number DESC LIMIT 1`,
        [id],
      );
      predictionId = row?.provider_job_id ?? undefined;
      if (!predictionId) await new Promise((r) => setImmediate(r));
    }
    return { id, sub, predictionId };
  }

  it("lists the provider's models once its key is set", async () => {
    const { server, key } = await start();
    const res = await gql(server.url, `{ models(mediaType: IMAGE) { name providers } }`, {}, key);
    expect(res.data!.models).toEqual(
      expect.arrayContaining([
        { name: "flux-schnell", providers: ["replicate"] },
        { name: "flux-dev", providers: ["replicate"] },
      ]),
    );
    expect(res.data!.models.map((m: { name: string }) => m.name)).not.toContain("gpt-image-1.5");
  });

  it("follows the provider's webhooks: progress from its logs, then the result, stored durably", async () => {
    const { server, key, socket } = await startWithWebhooks();
    const { sub, predictionId } = await submitted(server, key, socket);
    const created = fake.requests.find(
      (r) => r.method === "POST" && r.path.endsWith("/predictions"),
    );
    expect(created?.body).toMatchObject({
      input: { prompt: "a red kite", width: 512, height: 512 },
      webhook: `${server.url}/webhooks/providers/replicate`,
    });

    await fake.advance(predictionId, "processing", {
      logs: " 50%|█████     | 2/4 [00:01<00:01]\n",
    });
    const progress = await sub.until((m) => m.generationUpdated.type === "PROGRESS");
    expect(progress.generationUpdated.generation.progress).toBe(0.5);

    await fake.succeed(predictionId, [fake.fileUrl("kite.png")]);
    const done = await sub.until((m) => m.generationUpdated.type === "SUCCEEDED");
    const g = done.generationUpdated.generation;
    expect(g.provider).toBe("replicate");
    expect(g.outputs).toHaveLength(1);
    expect(g.outputs[0].url).toMatch(/\/files\/generations\//);
    const image = await fetch(g.outputs[0].url);
    expect(image.headers.get("content-type")).toBe("image/png");
    expect(fake.deliveries.every((d) => d.status === 200)).toBe(true);
  });

  it("refuses forged, stale and replayed webhooks, and ignores jobs it does not know", async () => {
    const { server, key, socket } = await startWithWebhooks();
    const { predictionId } = await submitted(server, key, socket);
    const url = `${server.url}/webhooks/providers/replicate`;
    const body = JSON.stringify({
      ...fake.prediction(predictionId),
      status: "processing",
      logs: "10%|",
    });
    const post = (headers: Record<string, string>, payload = body) =>
      fetch(url, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: payload,
      });

    const forged = signWebhook(body, {
      secret: "whsec_" + Buffer.from("not the secret at all").toString("base64"),
    });
    expect((await post(forged)).status).toBe(401);
    const stale = signWebhook(body, {
      secret: FAKE_WEBHOOK_SECRET,
      timestamp: new Date(Date.now() - 10 * 60_000),
    });
    expect((await post(stale)).status).toBe(401);
    const good = signWebhook(body, { secret: FAKE_WEBHOOK_SECRET });
    expect((await post(good, body.replace("10%", "90%"))).status).toBe(401);
    expect((await post(good)).status).toBe(200);
    expect((await post(good)).status).toBe(409);

    const unknownBody = JSON.stringify({ ...fake.prediction(predictionId), id: "p_unknown_job" });
    const unknown = await post(
      signWebhook(unknownBody, { secret: FAKE_WEBHOOK_SECRET }),
      unknownBody,
    );
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toEqual({ ok: true, outcome: "ignored" });
    const noSuchProvider = await fetch(`${server.url}/webhooks/providers/nobody`, {
      method: "POST",
      body: "{}",
    });
    expect(noSuchProvider.status).toBe(404);
  });

  it("finishes once when a late, out-of-order webhook follows the result", async () => {
    const { server, key, socket } = await startWithWebhooks();
    const { id, sub, predictionId } = await submitted(server, key, socket);
    const processing = JSON.stringify({
      ...fake.prediction(predictionId),
      status: "processing",
      logs: "20%|",
    });
    await fake.succeed(predictionId, [fake.fileUrl("kite.png")]);
    await sub.until((m) => m.generationUpdated.type === "SUCCEEDED");
    const late = await fetch(`${server.url}/webhooks/providers/replicate`, {
      method: "POST",
      headers: {
        ...signWebhook(processing, { secret: FAKE_WEBHOOK_SECRET }),
        "content-type": "application/json",
      },
      body: processing,
    });
    expect(await late.json()).toEqual({ ok: true, outcome: "ignored" });
    const [row] = await server.app.db.dataSource.query(
      `SELECT status, progress, (SELECT count(*)::int FROM usage_records WHERE generation_id = $1) AS usage
         FROM generations WHERE id = $1`,
      [id],
    );
    expect(row).toEqual({ status: "SUCCEEDED", progress: 1, usage: 1 });
  });

  it("polls the provider when no public URL is configured", async () => {
    const { server, key, socket } = await start();
    const { sub, predictionId } = await submitted(server, key, socket);
    const created = fake.requests.find(
      (r) => r.method === "POST" && r.path.endsWith("/predictions"),
    );
    expect(created?.body).not.toHaveProperty("webhook");
    await fake.succeed(predictionId, [fake.fileUrl("kite.png")]);
    const done = await sub.until((m) => m.generationUpdated.type === "SUCCEEDED");
    expect(done.generationUpdated.generation.outputs[0].contentType).toBe("image/png");
    expect(
      fake.requests.some(
        (r) => r.method === "GET" && r.path.endsWith(`/predictions/${predictionId}`),
      ),
    ).toBe(true);
  });

  it("fails an attempt whose submission is never answered at the provider timeout, not the HTTP client's, and moves on", async () => {
    const { server, key, socket } = await start({ PROVIDER_TIMEOUT_SECONDS: "1" });
    // The create request is accepted and never answered (the adapter's own limit is 30 s).
    fake.hangNext(1);
    const started = Date.now();
    const res = await gql(server.url, GENERATE, { input: IMAGE }, key);
    const sub = socket.subscribe(WATCH, { id: res.data!.generate.id });
    const failed = await sub.until((m) => m.generationUpdated.type === "ATTEMPT_FAILED");
    expect(Date.now() - started).toBeLessThan(10_000);
    const [first] = failed.generationUpdated.generation.attempts;
    expect(first).toMatchObject({ status: "FAILED", provider: "replicate" });
    expect(first.error).toMatch(/timed out/);
    // The next attempts were sent (and, never driven by the fake, time out in turn): the
    // generation ends here, leaving nothing to the next test's server.
    const done = await sub.until((m) => m.generationUpdated.type === "FAILED");
    expect(done.generationUpdated.generation.error.code).toBe("PROVIDER_TIMEOUT");
    expect(done.generationUpdated.generation.attempts).toHaveLength(3);
  });

  it("fails with PROVIDER_TIMEOUT when the provider never answers, canceling each attempt", async () => {
    const { server, key, socket } = await start({ PROVIDER_TIMEOUT_SECONDS: "0.5" });
    const res = await gql(server.url, GENERATE, { input: IMAGE }, key);
    const id = res.data!.generate.id;
    // The fake's predictions move only when a test drives them: these never answer.
    const sub = socket.subscribe(WATCH, { id });
    const failed = await sub.until((m) => m.generationUpdated.type === "FAILED");
    const g = failed.generationUpdated.generation;
    expect(g.error).toEqual({ code: "PROVIDER_TIMEOUT", retryable: true });
    expect(g.attempts.map((a: { status: string }) => a.status)).toEqual([
      "FAILED",
      "FAILED",
      "FAILED",
    ]);
    expect(fake.requests.filter((r) => r.path.endsWith("/cancel"))).toHaveLength(3);
  });
});
