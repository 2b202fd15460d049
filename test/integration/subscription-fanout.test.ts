import Redis from "ioredis";
import { gql, wsClient, type SubscriptionRecorder, type WsClient } from "../helpers/graphql";
import { TEST_REDIS_URL } from "../helpers/redis";
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
  generationUpdated(id: $id) { type generation { id status } }
}`;

type Event = { generationUpdated: { type: string; generation: { id: string; status: string } } };

/**
 * Many streams on one socket, opened while others finish and release their Redis channels:
 * every one of them must start with the current state and end with the result.
 */
describe("generationUpdated streams opened while others finish", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { overrides: { SIM_LATENCY_MS: "200" } });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);
  });

  afterAll(async () => {
    await socket?.dispose();
    await server?.stop();
    await env?.cleanup();
  });

  it("gives each of 60 streams, opened 8 at a time after generate, the result and completes it", async () => {
    const total = 60;
    const streams: Array<{ id: string; sub: SubscriptionRecorder<Event> }> = [];
    let next = 0;
    async function lane(): Promise<void> {
      while (next < total) {
        const i = next++;
        const res = await gql<{ generate: { id: string } }>(
          server.url,
          GENERATE,
          {
            input: {
              userId: "fan-out",
              mediaType: "IMAGE",
              prompt: `fan-out ${i}`,
              width: 64,
              height: 64,
            },
          },
          key,
        );
        const id = res.data!.generate.id;
        const sub = socket.subscribe<Event>(WATCH, { id });
        streams.push({ id, sub });
        await sub.until((m) => m.generationUpdated.generation.status === "SUCCEEDED");
        await sub.completed.promise;
      }
    }
    await Promise.all(Array.from({ length: 8 }, lane));

    expect(streams).toHaveLength(total);
    for (const { id, sub } of streams) {
      expect(sub.errors).toEqual([]);
      expect(sub.messages.every((m) => m.generationUpdated.generation.id === id)).toBe(true);
      expect(sub.messages.at(-1)!.generationUpdated.type).toBe("SUCCEEDED");
    }
    // Completed streams hold no Redis channel.
    const redis = new Redis(TEST_REDIS_URL);
    try {
      const counts = (await redis.pubsub(
        "NUMSUB",
        ...streams.map((s) => `${env.redisPrefix}:generation:${s.id}`),
      )) as Array<string | number>;
      expect(counts.filter((_c, i) => i % 2 === 1).map(Number)).toEqual(streams.map(() => 0));
    } finally {
      redis.disconnect();
    }
  });
});
