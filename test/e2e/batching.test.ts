import { Client } from "pg";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  assertBuilt,
  createAdminKey,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
} from "../helpers/process";
import { createTestEnv, type TestEnv } from "../helpers/test-app";

/**
 * Batching across real processes: a `gengate sim-provider` (with its batch API), one api and
 * workers that are killed (SIGKILL) with work pending, first while generations wait BATCHED,
 * then while a submitted batch is being polled. Nothing may be lost or sent twice.
 */
const TOKEN = "sim-token-for-batching-e2e";
const SECRET = "whsec_" + Buffer.from("batching e2e webhook secret").toString("base64");
const TIMEOUT = 90_000;
const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED"]);

describe("batching survives killed workers", () => {
  let env: TestEnv;
  let sim: GengateProcess;
  let api: GengateProcess;
  let socket: WsClient;
  let key: string;
  let vars: Record<string, string>;

  beforeAll(async () => {
    assertBuilt();
    env = await createTestEnv();
    sim = await spawnGengate("sim-provider", {
      SIM_PROVIDER_PORT: "0",
      HOST: "127.0.0.1",
      SIM_PROVIDER_TOKEN: TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
      SIM_LATENCY_MS: "200",
      SIM_LATENCY_JITTER: "0",
      LOG_LEVEL: "info",
    });
    vars = env.env({
      SIM_PROVIDER_URL: sim.url,
      SIM_PROVIDER_TOKEN: TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
      // Only the size sends a batch: the test decides when a group is complete.
      BATCH_SIZE: "3",
      BATCH_TIMEOUT_SECONDS: "3600",
      LOG_LEVEL: "info",
    });
    const admin = await createAdminKey(vars);
    api = await spawnGengate("api", vars);
    const res = await gql(
      api.url,
      `mutation { createAccount(name: "e2e") { apiKey { key } } }`,
      {},
      admin,
    );
    key = res.data!.createAccount.apiKey.key;
    socket = wsClient(api.url, key);
  }, TIMEOUT);

  afterAll(async () => {
    await socket?.dispose();
    await stopAllGengates();
    await env?.cleanup();
  });

  async function generate(prompt: string): Promise<string> {
    const res = await gql(
      api.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`,
      {
        input: {
          userId: "e2e-batch",
          mediaType: "IMAGE",
          model: "sim-image-fast",
          prompt,
          width: 64,
          height: 64,
          priority: "BATCH",
          cache: "BYPASS",
        },
      },
      key,
    );
    if (!res.data) throw new Error(JSON.stringify(res.errors));
    expect(res.data.generate.status).toBe("BATCHED");
    return res.data.generate.id as string;
  }

  function finished(id: string): Promise<string> {
    const sub = socket.subscribe(
      `subscription($id: ID!) { generationUpdated(id: $id) { generation { status } } }`,
      { id },
    );
    return sub
      .until((m) => FINAL.has(m.generationUpdated.generation.status))
      .then((m) => {
        sub.stop();
        return m.generationUpdated.generation.status as string;
      });
  }

  it(
    "loses no generation and sends none twice when workers die with BATCHED rows and with a batch in flight",
    async () => {
      const workerA = await spawnGengate("worker", vars);
      // Two of three: they wait BATCHED. The worker dies; the third arrives with no worker.
      const waiting = [await generate("a clay pot"), await generate("a glass vase")];
      await workerA.kill();
      waiting.push(await generate("a tin cup"));
      const firstDone = waiting.map(finished);

      // The next worker collects the full group at start and sends it.
      const workerB = await spawnGengate("worker", vars);
      expect(await Promise.all(firstDone)).toEqual(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);

      // A batch that takes a while at the provider: the worker polling it dies.
      const slow = [
        await generate("a copper kettle [sim:latency=2500]"),
        await generate("an iron pan [sim:latency=2500]"),
        await generate("a wooden spoon [sim:latency=2500]"),
      ];
      const secondDone = slow.map(finished);
      let submitted = 0;
      await workerB.waitForLog((l) => l.json?.msg === "batch submitted" && ++submitted === 2, {
        what: "the second batch submitted",
      });
      await workerB.kill();
      await spawnGengate("worker", vars);
      expect(await Promise.all(secondDone)).toEqual(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);

      // The provider saw each request exactly once: two batches of three.
      const list = (await (
        await fetch(`${sim.url}/v1/batches`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).json()) as {
        data: Array<{ id: string; request_counts: { total: number; completed: number } }>;
      };
      expect(list.data).toHaveLength(2);
      expect(list.data.map((b) => b.request_counts)).toEqual([
        { total: 3, completed: 3, failed: 0 },
        { total: 3, completed: 3, failed: 0 },
      ]);

      // And gengate: one successful attempt, in a batch, and one usage row per generation.
      const db = new Client({ connectionString: env.databaseUrl });
      await db.connect();
      try {
        const { rows } = await db.query(
          `SELECT g.status,
                  (SELECT count(*)::int FROM attempts a WHERE a.generation_id = g.id) AS attempts,
                  (SELECT count(*)::int FROM attempts a
                    WHERE a.generation_id = g.id AND a.batch_id IS NOT NULL AND a.status = 'SUCCEEDED') AS batched,
                  (SELECT count(*)::int FROM usage_records u WHERE u.generation_id = g.id) AS usage
             FROM generations g WHERE g.id = ANY($1::uuid[])`,
          [[...waiting, ...slow]],
        );
        expect(rows).toHaveLength(6);
        for (const r of rows)
          expect(r).toEqual({ status: "SUCCEEDED", attempts: 1, batched: 1, usage: 1 });
      } finally {
        await db.end();
      }
    },
    TIMEOUT,
  );
});
