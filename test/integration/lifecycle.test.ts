import Redis from "ioredis";
import { TEST_REDIS_URL } from "../helpers/redis";
import { gql, errorCode, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) {
  generate(input: $input) { id status progress model seed userId estimatedCostUsd estimatedSeconds queuePosition cached }
}`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type at
    generation { id status progress costUsd provider error { code message retryable }
      outputs { url contentType width height bytes } attempts { number status provider error } }
  }
}`;

describe("generation lifecycle over HTTP and graphql-ws", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env);
    key = (await partner(server, await adminKey(server))).key;
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await server.stop();
    await env.cleanup();
  });

  function socket(credential = key): WsClient {
    const s = wsClient(server.url, credential);
    sockets.push(s);
    return s;
  }

  it("answers generate at once with a QUEUED generation and its estimate", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "a lighthouse at dusk",
          width: 512,
          height: 512,
        },
      },
      key,
    );
    expect(res.errors).toBeUndefined();
    const g = res.data!.generate;
    expect(g.status).toBe("QUEUED");
    expect(g.userId).toBe("u-1");
    expect(g.estimatedCostUsd).toBeGreaterThan(0);
    expect(g.estimatedSeconds).toBeGreaterThan(0);
    expect(g.queuePosition).toBeGreaterThanOrEqual(1);
    expect(g.cached).toBe(false);
  });

  it("streams progress and the result, then completes", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "a fox in the snow [sim:latency=3000]",
          width: 256,
          height: 256,
          seed: 7,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const sub = socket().subscribe(WATCH, { id });
    const done = await sub.until((m) => m.generationUpdated.type === "SUCCEEDED");
    await sub.completed.promise;

    const types = sub.messages.map((m) => m.generationUpdated.type);
    expect(types).toContain("PROGRESS");
    const progress = sub.messages.map((m) => m.generationUpdated.generation.progress);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const g = done.generationUpdated.generation;
    expect(g.status).toBe("SUCCEEDED");
    expect(g.progress).toBe(1);
    expect(g.provider).toBe("simulated");
    expect(g.costUsd).toBeGreaterThan(0);
    expect(g.attempts).toEqual([
      { number: 1, status: "SUCCEEDED", provider: "simulated", error: null },
    ]);
    expect(g.outputs).toHaveLength(1);
    expect(g.outputs[0]).toMatchObject({ contentType: "image/png", width: 256, height: 256 });

    const image = await fetch(g.outputs[0].url);
    expect(image.status).toBe(200);
    expect(image.headers.get("content-type")).toBe("image/png");
    const bytes = Buffer.from(await image.arrayBuffer());
    expect(bytes.subarray(1, 4).toString()).toBe("PNG");
    expect(bytes.length).toBe(g.outputs[0].bytes);
  });

  it("gives a late subscriber the finished result as its first message", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "AUDIO",
          prompt: "rain on a tin roof",
          durationSeconds: 1,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const first = socket().subscribe(WATCH, { id });
    await first.until((m) => m.generationUpdated.type === "SUCCEEDED");

    const late = socket().subscribe(WATCH, { id });
    await late.completed.promise;
    expect(late.messages).toHaveLength(1);
    expect(late.messages[0].generationUpdated.type).toBe("SUCCEEDED");
    expect(late.messages[0].generationUpdated.generation.outputs[0].contentType).toBe("audio/wav");
  });

  it("records one usage row and one attempt for a finished generation", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-usage",
          mediaType: "IMAGE",
          prompt: "usage check",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    await socket()
      .subscribe(WATCH, { id })
      .until((m) => m.generationUpdated.type === "SUCCEEDED");
    const rows = await server.app.db.dataSource.query(
      `SELECT cost_usd, cached, user_id FROM usage_records WHERE generation_id = $1`,
      [id],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ cached: false, user_id: "u-usage" });
    expect(Number(rows[0].cost_usd)).toBeGreaterThan(0);
  });

  it("fails a generation whose provider fails every attempt, with an error code", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "this one breaks [sim:fail]",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const sub = socket().subscribe(WATCH, { id });
    const failed = await sub.until((m) => m.generationUpdated.type === "FAILED");
    const g = failed.generationUpdated.generation;
    expect(g.status).toBe("FAILED");
    expect(g.error).toMatchObject({ code: "PROVIDER_ERROR", retryable: true });
    expect(g.attempts.map((a: { status: string }) => a.status)).toEqual([
      "FAILED",
      "FAILED",
      "FAILED",
    ]);
    expect(sub.messages.some((m) => m.generationUpdated.type === "ATTEMPT_FAILED")).toBe(true);
    const usage = await server.app.db.dataSource.query(
      `SELECT 1 FROM usage_records WHERE generation_id = $1`,
      [id],
    );
    expect(usage).toHaveLength(0);
  });

  it("stops at once on a failure that is not retryable", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "refuse me [sim:reject]",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const sub = socket().subscribe(WATCH, { id: res.data!.generate.id });
    const failed = await sub.until((m) => m.generationUpdated.type === "FAILED");
    expect(failed.generationUpdated.generation.error.code).toBe("CONTENT_REFUSED");
    expect(failed.generationUpdated.generation.attempts).toHaveLength(1);
  });

  it("cancels a running generation and says so to subscribers", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "slow one [sim:latency=60000]",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const sub = socket().subscribe(WATCH, { id });
    await sub.until((m) => m.generationUpdated.generation.status === "PROCESSING");
    const canceled = await gql(
      server.url,
      `mutation($id: ID!) { cancelGeneration(id: $id) { id status error { code } } }`,
      { id },
      key,
    );
    expect(canceled.data!.cancelGeneration).toEqual({
      id,
      status: "CANCELED",
      error: { code: "CANCELED" },
    });
    const last = await sub.until((m) => m.generationUpdated.type === "CANCELED");
    expect(last.generationUpdated.generation.attempts[0].status).toBe("CANCELED");
    await sub.completed.promise;

    const again = await gql(
      server.url,
      `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`,
      { id },
      key,
    );
    expect(again.data!.cancelGeneration.status).toBe("CANCELED");
  });

  it("returns the same generation for a reused idempotency key, and refuses it with other parameters", async () => {
    const input = {
      userId: "u-2",
      mediaType: "IMAGE",
      prompt: "idempotent cat",
      width: 128,
      height: 128,
      idempotencyKey: "order-42",
    };
    const a = await gql(server.url, GENERATE, { input }, key);
    const b = await gql(server.url, GENERATE, { input }, key);
    expect(b.data!.generate.id).toBe(a.data!.generate.id);
    const conflict = await gql(
      server.url,
      GENERATE,
      { input: { ...input, prompt: "another cat" } },
      key,
    );
    expect(errorCode(conflict)).toBe("IDEMPOTENCY_CONFLICT");
    const count = await server.app.db.dataSource.query(
      `SELECT count(*)::int AS n FROM generations WHERE idempotency_key = 'order-42'`,
    );
    expect(count[0].n).toBe(1);
  });

  it("lets concurrent requests with one idempotency key create one generation", async () => {
    const input = {
      userId: "u-2",
      mediaType: "IMAGE",
      prompt: "race",
      width: 128,
      height: 128,
      idempotencyKey: "race-1",
    };
    const results = await Promise.all(
      Array.from({ length: 8 }, () => gql(server.url, GENERATE, { input }, key)),
    );
    const ids = new Set(results.map((r) => r.data?.generate.id));
    expect(results.every((r) => !r.errors)).toBe(true);
    expect(ids.size).toBe(1);
  });

  it("pages through generations newest first with cursors", async () => {
    for (let i = 0; i < 5; i++) {
      await gql(
        server.url,
        GENERATE,
        {
          input: {
            userId: "pager",
            mediaType: "IMAGE",
            prompt: `page ${i}`,
            width: 128,
            height: 128,
          },
        },
        key,
      );
    }
    const q = `query($after: String) { generations(first: 2, after: $after, userId: "pager") {
      totalCount pageInfo { hasNextPage endCursor } edges { cursor node { prompt } } } }`;
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const res: any = await gql(server.url, q, { after }, key);
      expect(res.data.generations.totalCount).toBe(5);
      seen.push(...res.data.generations.edges.map((e: any) => e.node.prompt));
      if (!res.data.generations.pageInfo.hasNextPage) break;
      after = res.data.generations.pageInfo.endCursor;
    }
    expect(seen).toEqual(["page 4", "page 3", "page 2", "page 1", "page 0"]);
  });

  it("releases the Redis subscription as soon as a client unsubscribes", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "u-1",
          mediaType: "IMAGE",
          prompt: "never ends [sim:latency=600000]",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const channel = `${env.redisPrefix}:generation:${id}`;
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const sub = socket().subscribe(WATCH, { id });
      await sub.until(() => true);
      const [, before] = (await redis.pubsub("NUMSUB", channel)) as [string, number];
      expect(before).toBe(1);
      sub.stop();
      const deadline = Date.now() + 5000;
      let after = before;
      while (after > 0 && Date.now() < deadline) {
        [, after] = (await redis.pubsub("NUMSUB", channel)) as [string, number];
      }
      expect(after).toBe(0);
    } finally {
      redis.disconnect();
      await gql(server.url, `mutation($id: ID!) { cancelGeneration(id: $id) { id } }`, { id }, key);
    }
  });

  it("streams a user's generations on generationsUpdated", async () => {
    const sub = socket().subscribe(
      `subscription { generationsUpdated(userId: "stream-user") { type generation { id userId status } } }`,
    );
    await new Promise((r) => setImmediate(r));
    const res = await gql(
      server.url,
      GENERATE,
      {
        input: {
          userId: "stream-user",
          mediaType: "IMAGE",
          prompt: "user stream",
          width: 128,
          height: 128,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const done = await sub.until(
      (m) => m.generationsUpdated.generation.id === id && m.generationsUpdated.type === "SUCCEEDED",
    );
    expect(done.generationsUpdated.generation.userId).toBe("stream-user");
    sub.stop();
  });
});
