import { Client } from "pg";
import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import { PG_ADMIN_URL } from "../helpers/postgres";
import { TEST_REDIS_URL } from "../helpers/redis";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

/**
 * Postgres and Redis going away under a running api, simulated by cutting a TCP proxy that the
 * api reaches them through (the shared servers themselves are never touched).
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id status } }
}`;
type Event = { generationUpdated: { type: string; generation: { id: string; status: string } } };

function input(prompt: string) {
  return { userId: "outage", mediaType: "IMAGE", prompt, width: 64, height: 64, cache: "BYPASS" };
}

async function statusOf(env: TestEnv, id: string): Promise<string | undefined> {
  const c = new Client({ connectionString: env.databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ status: string }>(
      `SELECT status FROM generations WHERE id = $1`,
      [id],
    );
    return rows[0]?.status;
  } finally {
    await c.end();
  }
}

/** Polls `check` every 100 ms; only where there is no event to wait on. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("Postgres unreachable under a running api", () => {
  let env: TestEnv;
  let proxy: TcpProxy;
  let server: TestServer;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const pg = new URL(PG_ADMIN_URL);
    proxy = await startTcpProxy(pg.hostname, Number(pg.port || 5432));
    server = await startTestServer(env, {
      worker: false,
      overrides: { DATABASE_URL: proxy.url(env.databaseUrl) },
    });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);
  });

  afterAll(async () => {
    proxy?.restore();
    await socket?.dispose();
    await server?.stop();
    await proxy?.close();
    await env?.cleanup();
  });

  it("answers SERVICE_UNAVAILABLE (HTTP 200) to requests and subscriptions meanwhile, keeps the socket open, and serves again once it is back", async () => {
    const before = await gql(server.url, GENERATE, { input: input("before the outage") }, key);
    const id = before.data!.generate.id as string;
    const watching = socket.subscribe<Event>(WATCH, { id });
    await watching.until(() => true);

    proxy.cut();
    const refused = await gql(server.url, GENERATE, { input: input("during the outage") }, key);
    expect(refused.status).toBe(200);
    expect(errorCode(refused)).toBe("SERVICE_UNAVAILABLE");
    expect(refused.errors![0]!.extensions).toMatchObject({ retryAfterSeconds: 1 });

    const lookup = await gql(
      server.url,
      `query($id: ID!) { generation(id: $id) { id } }`,
      { id },
      key,
    );
    expect(lookup.status).toBe(200);
    expect(errorCode(lookup)).toBe("SERVICE_UNAVAILABLE");

    // A new subscription is refused as an operation error; the socket and the streams already
    // on it stay.
    const late = socket.subscribe<Event>(WATCH, { id });
    const err = await late.error();
    expect(err).toEqual([
      expect.objectContaining({
        extensions: expect.objectContaining({ code: "SERVICE_UNAVAILABLE" }),
      }),
    ]);
    expect(watching.errors).toEqual([]);

    proxy.restore();
    const after = await gql(server.url, GENERATE, { input: input("after the outage") }, key);
    expect(after.data?.generate.status).toBe("QUEUED");
    const again = socket.subscribe<Event>(WATCH, { id: after.data!.generate.id });
    expect((await again.until(() => true)).generationUpdated.generation.status).toBe("QUEUED");
    again.stop();
    watching.stop();
  });
});

describe("the api's Redis connection dropped while a generation finishes", () => {
  let env: TestEnv;
  let proxy: TcpProxy;
  let api: TestServer;
  let worker: TestServer;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const redis = new URL(TEST_REDIS_URL);
    proxy = await startTcpProxy(redis.hostname, Number(redis.port || 6379));
    // The api reaches Redis through the proxy; the worker, which publishes, directly.
    [api, worker] = await Promise.all([
      startTestServer(env, {
        worker: false,
        overrides: { REDIS_URL: proxy.url(TEST_REDIS_URL) },
      }),
      startTestServer(env, { api: false, worker: true }),
    ]);
    key = (await partner(api, await adminKey(api))).key;
    socket = wsClient(api.url, key);
  });

  afterAll(async () => {
    proxy?.restore();
    await socket?.dispose();
    await Promise.all([api?.stop(), worker?.stop()]);
    await proxy?.close();
    await env?.cleanup();
  });

  it("still gives its subscriber the final state, read again once the api is subscribed again", async () => {
    const res = await gql(
      api.url,
      GENERATE,
      { input: input("finishes while the api is cut off [sim:latency=1500]") },
      key,
    );
    const id = res.data!.generate.id as string;
    const sub = socket.subscribe<Event>(WATCH, { id });
    await sub.until((m) => m.generationUpdated.generation.status === "PROCESSING");

    proxy.cut();
    // The SUCCEEDED event is published while the api is not subscribed: it is lost.
    await until(async () => (await statusOf(env, id)) === "SUCCEEDED", "the generation to succeed");
    expect(sub.messages.map((m) => m.generationUpdated.generation.status)).not.toContain(
      "SUCCEEDED",
    );

    proxy.restore();
    const done = await sub.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
    expect(done.generationUpdated.type).toBe("SUCCEEDED");
    await sub.completed.promise;
    expect(sub.errors).toEqual([]);
  });
});
