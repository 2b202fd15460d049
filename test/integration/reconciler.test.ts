import Redis from "ioredis";
import { deletePrefix, TEST_REDIS_URL } from "../helpers/redis";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { status } } }`;

async function usageRows(server: TestServer, id: string): Promise<number> {
  const [row] = await server.app.db.dataSource.query(
    `SELECT count(*)::int AS n FROM usage_records WHERE generation_id = $1`,
    [id],
  );
  return row.n;
}

describe("reconciler", () => {
  let env: TestEnv;
  const servers: TestServer[] = [];
  const sockets: WsClient[] = [];

  beforeEach(async () => {
    env = await createTestEnv();
  });

  afterEach(async () => {
    await Promise.all(sockets.splice(0).map((s) => s.dispose()));
    for (const s of servers.splice(0)) await s.stop();
    await env.cleanup();
  });

  async function start(
    overrides: Record<string, string> = {},
    roles: { api?: boolean; worker?: boolean } = {},
  ) {
    // Long intervals: these tests drive the reconciler by hand with runOnce(0).
    const server = await startTestServer(env, {
      ...roles,
      overrides: {
        RECONCILE_INTERVAL_SECONDS: "3600",
        RECONCILE_STALE_SECONDS: "3600",
        ...overrides,
      },
    });
    servers.push(server);
    return server;
  }

  it("re-enqueues queued generations whose jobs Redis lost, and each finishes once", async () => {
    const api = await start({}, { worker: false });
    const key = (await partner(api, await adminKey(api))).key;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await gql(
        api.url,
        GENERATE,
        { input: { userId: "u", mediaType: "IMAGE", prompt: `lost ${i}`, width: 64, height: 64 } },
        key,
      );
      ids.push(res.data!.generate.id);
    }
    await deletePrefix(env.redisPrefix);
    expect(await api.app.queue.has(ids[0]!)).toBe(false);

    const worker = await start({}, { api: false });
    expect(await worker.app.reconciler.runOnce(0)).toBe(3);
    const socket = wsClient(api.url, key);
    sockets.push(socket);
    for (const id of ids) {
      await socket.subscribe(WATCH, { id }).until((m) => m.generationUpdated.type === "SUCCEEDED");
      expect(await usageRows(api, id)).toBe(1);
    }
    // A second pass finds nothing left to do.
    expect(await worker.app.reconciler.runOnce(0)).toBe(0);
  });

  it("re-enqueues a queued generation whose job id only a leftover of partly deleted keys still holds", async () => {
    const api = await start({}, { worker: false });
    const key = (await partner(api, await adminKey(api))).key;
    const res = await gql(
      api.url,
      GENERATE,
      { input: { userId: "u", mediaType: "IMAGE", prompt: "leftover", width: 64, height: 64 } },
      key,
    );
    const id = res.data!.generate.id as string;
    await deletePrefix(env.redisPrefix);
    // What a worker leaves when it takes the id after the job's hash was deleted: BullMQ's
    // bookkeeping written onto the missing hash, without name, data or options, kept as
    // completed. BullMQ takes any hash under the id for the job and skips adding it again.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const at = String(Date.now());
      await redis.hset(`${env.redisPrefix}:generations:${id}`, {
        processedOn: at,
        ats: "1",
        atm: "1",
        returnvalue: "null",
        finishedOn: at,
      });
      await redis.zadd(`${env.redisPrefix}:generations:completed`, at, id);
    } finally {
      redis.disconnect();
    }
    expect(await api.app.queue.has(id)).toBe(false);

    expect(await api.app.reconciler.runOnce(0)).toBe(1);
    expect(await api.app.queue.has(id)).toBe(true);
    await start({}, { api: false });
    const socket = wsClient(api.url, key);
    sockets.push(socket);
    await socket.subscribe(WATCH, { id }).until((m) => m.generationUpdated.type === "SUCCEEDED");
    expect(await usageRows(api, id)).toBe(1);
    expect(await api.app.reconciler.runOnce(0)).toBe(0);
  });

  it("restarts the poll chain of a processing generation whose poll job was lost", async () => {
    const api = await start({}, { worker: false });
    const key = (await partner(api, await adminKey(api))).key;
    const res = await gql(
      api.url,
      GENERATE,
      {
        input: {
          userId: "u",
          mediaType: "IMAGE",
          prompt: "poll lost [sim:latency=1500]",
          width: 64,
          height: 64,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    const socket = wsClient(api.url, key);
    sockets.push(socket);
    const sub = socket.subscribe(WATCH, { id });
    const firstWorker = await start({}, { api: false });
    await sub.until((m) => m.generationUpdated.generation.status === "PROCESSING");
    // A stopped worker leaves its delayed status check in Redis; losing Redis then loses it.
    await firstWorker.stop();
    servers.splice(servers.indexOf(firstWorker), 1);
    expect(await api.app.reconciler.runOnce(0)).toBe(0);
    await deletePrefix(env.redisPrefix);

    const worker = await start({}, { api: false });
    expect(await worker.app.reconciler.runOnce(0)).toBe(1);
    await sub.until((m) => m.generationUpdated.type === "SUCCEEDED");
    expect(await usageRows(api, id)).toBe(1);
    const attempts = await api.app.db.dataSource.query(
      `SELECT status FROM attempts WHERE generation_id = $1`,
      [id],
    );
    expect(attempts).toEqual([{ status: "SUCCEEDED" }]);
  });

  it("leaves alone a queued generation whose job is still in the queue", async () => {
    const api = await start({}, { worker: false });
    const key = (await partner(api, await adminKey(api))).key;
    await gql(
      api.url,
      GENERATE,
      { input: { userId: "u", mediaType: "IMAGE", prompt: "waiting", width: 64, height: 64 } },
      key,
    );
    expect(await api.app.reconciler.runOnce(0)).toBe(0);
  });

  it("with an in-process queue, finishes at start what the previous process left unfinished", async () => {
    const first = await start({ REDIS_URL: "" });
    const key = (await partner(first, await adminKey(first))).key;
    const socket = wsClient(first.url, key);
    sockets.push(socket);
    const res = await gql(
      first.url,
      GENERATE,
      {
        input: {
          userId: "u",
          mediaType: "IMAGE",
          prompt: "survives [sim:latency=800]",
          width: 64,
          height: 64,
        },
      },
      key,
    );
    const id = res.data!.generate.id;
    await socket
      .subscribe(WATCH, { id })
      .until((m) => m.generationUpdated.generation.status === "PROCESSING");
    await Promise.all(sockets.splice(0).map((s) => s.dispose()));
    await servers.pop()!.stop();

    // No runOnce here: the new process's first pass must find it by itself.
    const second = await start({ REDIS_URL: "", RECONCILE_STALE_SECONDS: "3600" });
    const again = wsClient(second.url, key);
    sockets.push(again);
    await again.subscribe(WATCH, { id }).until((m) => m.generationUpdated.type === "SUCCEEDED");
    expect(await usageRows(second, id)).toBe(1);
  });
});
