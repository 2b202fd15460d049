import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  createAdminKey,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
} from "../helpers/process";
import { createTestEnv, type TestEnv } from "../helpers/test-app";

/**
 * Two `gengate sim-provider` processes (a primary and a fallback), one api and two workers:
 * the circuit one worker opens is the one the other respects.
 */
const TOKEN = "sim-token-for-resilience-e2e";
const SECRET = "whsec_" + Buffer.from("resilience e2e webhook secret").toString("base64");
const TIMEOUT = 90_000;

describe("shared circuit breakers across worker processes", () => {
  let env: TestEnv;
  let primary: GengateProcess;
  let fallback: GengateProcess;
  let api: GengateProcess;
  let socket: WsClient;
  let key: string;
  let admin: string;
  let workers: GengateProcess[];

  beforeAll(async () => {
    env = await createTestEnv();
    const sim = {
      SIM_PROVIDER_PORT: "0",
      HOST: "127.0.0.1",
      SIM_PROVIDER_TOKEN: TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
      SIM_LATENCY_MS: "200",
      SIM_LATENCY_JITTER: "0",
      SIM_PROGRESS_STEPS: "1",
    };
    [primary, fallback] = await Promise.all([
      spawnGengate("sim-provider", sim),
      spawnGengate("sim-provider", sim),
    ]);
    const vars = env.env({
      SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
      SIM_PROVIDER_TOKEN: TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
      CIRCUIT_MIN_REQUESTS: "3",
      CIRCUIT_COOLDOWN_SECONDS: "600",
      POLL_MIN_MS: "20",
      POLL_MAX_MS: "200",
    });
    admin = await createAdminKey(vars);
    let w1: GengateProcess;
    let w2: GengateProcess;
    [api, w1, w2] = await Promise.all([
      spawnGengate("api", vars),
      spawnGengate("worker", { ...vars, WORKER_CONCURRENCY: "2" }),
      spawnGengate("worker", { ...vars, WORKER_CONCURRENCY: "2" }),
    ]);
    const res = await gql(
      api.url,
      `mutation { createAccount(name: "e2e") { apiKey { key } } }`,
      {},
      admin,
    );
    key = res.data!.createAccount.apiKey.key;
    socket = wsClient(api.url, key);
    workers = [w1, w2];
  }, TIMEOUT);

  afterAll(async () => {
    await socket?.dispose();
    await stopAllGengates();
    await env.cleanup();
  });

  async function finish(prompt: string) {
    const res = await gql(
      api.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      {
        input: { userId: "u", mediaType: "IMAGE", prompt, width: 64, height: 64 },
      },
      key,
    );
    const done = await socket
      .subscribe(
        `subscription($id: ID!) { generationUpdated(id: $id) { type generation { status provider attempts { provider } } } }`,
        {
          id: res.data!.generate.id,
        },
      )
      .until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
    return done.generationUpdated.generation;
  }

  it(
    "opens the primary's circuit once, for every worker, and every generation still finishes",
    async () => {
      const down = await fetch(`${primary.url}/admin/behaviour`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ mode: "down" }),
      });
      expect(down.status).toBe(200);

      const first = await Promise.all([0, 1, 2, 3].map((i) => finish(`primary down ${i}`)));
      expect(first.every((g) => g.status === "SUCCEEDED" && g.provider === "simulated-2")).toBe(
        true,
      );

      const health = await gql(api.url, `{ providerHealth { provider circuit } }`, {}, admin);
      expect(health.data!.providerHealth).toEqual(
        expect.arrayContaining([
          { provider: "simulated", circuit: "OPEN" },
          { provider: "simulated-2", circuit: "CLOSED" },
        ]),
      );

      // Whichever worker takes them, the open circuit is skipped: no attempt at the primary.
      const after = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => finish(`after open ${i}`)));
      for (const g of after) {
        expect(g.status).toBe("SUCCEEDED");
        expect(g.attempts.map((a: { provider: string }) => a.provider)).toEqual(["simulated-2"]);
      }
      // Both workers took part.
      for (const w of workers)
        expect(w.logs.some((l) => l.json?.msg === "generation succeeded")).toBe(true);
    },
    TIMEOUT,
  );
});
