import Redis from "ioredis";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import { assertBuilt, stopAllGengates, succeededLog, type GengateRole } from "../helpers/process";
import { createProcessTestEnv, type ProcessTestEnv } from "../helpers/process-env";
import { TEST_REDIS_URL } from "../helpers/redis";
import { startRedisServer, type RedisServer } from "../helpers/redis-server";

/**
 * gengate finding Redis through Sentinel (REDIS_SENTINELS): a private master, its replica and
 * one sentinel, an api and a worker process; then a failover to the replica, after which the
 * same processes keep taking and finishing generations.
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { status } } }`;
type Event = { generationUpdated: { type: string; generation: { status: string } } };

describe("Redis through Sentinel", () => {
  let env: ProcessTestEnv;
  const servers: RedisServer[] = [];
  const sockets: WsClient[] = [];
  const clients: Redis[] = [];

  beforeAll(() => {
    assertBuilt();
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose().catch(() => undefined)));
    await stopAllGengates();
    for (const c of clients) c.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
    await env?.cleanup();
  });

  it("runs generations through the master the sentinel names, before and after a failover", async () => {
    env = await createProcessTestEnv();
    const master = await startRedisServer();
    servers.push(master);
    const replica = await startRedisServer({
      args: ["--replicaof", "127.0.0.1", `${master.port}`],
    });
    servers.push(replica);
    await replica.waitForLog(/MASTER <-> REPLICA sync: Finished with success/);
    const sentinel = await startRedisServer({
      sentinel: [
        `sentinel monitor gengate-test 127.0.0.1 ${master.port} 1`,
        `sentinel known-replica gengate-test 127.0.0.1 ${replica.port}`,
        "sentinel down-after-milliseconds gengate-test 5000",
        "sentinel failover-timeout gengate-test 10000",
      ],
    });
    servers.push(sentinel);

    const redisEnv = {
      // Host and port come from the sentinel; the URL keeps the database.
      REDIS_URL: "redis://gengate-test/0",
      REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`,
      REDIS_SENTINEL_NAME: "gengate-test",
    };
    const spawn = (role: GengateRole) => env.spawn(role, redisEnv);
    const [api, worker] = await Promise.all([spawn("api"), spawn("worker")]);
    const key = await env.partnerKey(api, "sentinel");
    const socket = wsClient(api.url, key);
    sockets.push(socket);

    const runOne = async (prompt: string) => {
      const res = await gql(
        api.url,
        GENERATE,
        { input: { userId: "u", mediaType: "IMAGE", prompt, cache: "BYPASS" } },
        key,
      );
      if (!res.data) throw new Error(`generate failed: ${JSON.stringify(res.errors)}`);
      const sub = socket.subscribe<Event>(WATCH, { id: res.data.generate.id });
      await sub.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
      return res.data.generate.id as string;
    };

    const before = await runOne("before the failover");
    // Its keys are on the master the sentinel named, not on the shared Redis.
    const onMaster = new Redis(master.url);
    clients.push(onMaster);
    const shared = new Redis(TEST_REDIS_URL);
    clients.push(shared);
    expect((await onMaster.keys(`${env.redisPrefix}:*`)).length).toBeGreaterThan(0);
    expect(await shared.keys(`${env.redisPrefix}:*`)).toEqual([]);

    // Fail over: the replica becomes the master, the old master its replica.
    const viaSentinel = new Redis(sentinel.url);
    clients.push(viaSentinel);
    await viaSentinel.call("SENTINEL", "FAILOVER", "gengate-test");
    await sentinel.waitForLog(/\+switch-master gengate-test 127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+/);
    expect(await viaSentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "gengate-test")).toEqual([
      "127.0.0.1",
      `${replica.port}`,
    ]);

    const after = await runOne("after the failover");
    const onNewMaster = new Redis(replica.url);
    clients.push(onNewMaster);
    expect(await onNewMaster.call("ROLE")).toEqual(expect.arrayContaining(["master"]));
    expect(after).not.toBe(before);
    expect(worker.logs.some(succeededLog(after))).toBe(true);

    await Promise.all([api.stop(), worker.stop()]);
  }, 90_000);
});
