import { gql, wsClient, type WsClient } from "../helpers/graphql";
import { freePort } from "../helpers/ports";
import {
  createAdminKey,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
} from "../helpers/process";
import { createTestEnv, type TestEnv } from "../helpers/test-app";

/**
 * gengate and `gengate sim-provider` as separate processes, speaking the Replicate protocol
 * over real HTTP: once with webhooks from the provider, once polling it.
 */
const SIM_TOKEN = "sim-token-for-e2e-tests";
const SIM_SECRET = "whsec_" + Buffer.from("a webhook secret for e2e").toString("base64");
const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type generation { status progress provider outputs { url contentType } attempts { status } error { code } }
  }
}`;
const TIMEOUT = 60_000;

describe("the lifecycle against gengate sim-provider", () => {
  let env: TestEnv;
  let sim: GengateProcess;
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    sim = await spawnGengate("sim-provider", {
      SIM_PROVIDER_PORT: "0",
      HOST: "127.0.0.1",
      SIM_PROVIDER_TOKEN: SIM_TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SIM_SECRET,
      SIM_LATENCY_MS: "900",
      SIM_LATENCY_JITTER: "0",
      SIM_PROGRESS_STEPS: "3",
    });
  }, TIMEOUT);

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await stopAllGengates();
    await env.cleanup();
  });

  async function gateway(extra: Record<string, string>) {
    const vars = env.env({
      SIM_PROVIDER_URL: sim.url,
      SIM_PROVIDER_TOKEN: SIM_TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SIM_SECRET,
      ...extra,
    });
    const admin = await createAdminKey(vars);
    const all = await spawnGengate("all", vars);
    const res = await gql(
      all.url,
      `mutation { createAccount(name: "e2e") { apiKey { key } } }`,
      {},
      admin,
    );
    const key = res.data!.createAccount.apiKey.key as string;
    const socket = wsClient(all.url, key);
    sockets.push(socket);
    return { all, key, socket };
  }

  async function run(all: GengateProcess, key: string, socket: WsClient, prompt: string) {
    const res = await gql(
      all.url,
      GENERATE,
      { input: { userId: "u", mediaType: "IMAGE", prompt, width: 128, height: 128 } },
      key,
    );
    const sub = socket.subscribe(WATCH, { id: res.data!.generate.id });
    const last = await sub.until((m) => ["SUCCEEDED", "FAILED"].includes(m.generationUpdated.type));
    return { messages: sub.messages.map((m) => m.generationUpdated), last: last.generationUpdated };
  }

  it(
    "is driven by the provider's signed webhooks when a public URL is configured",
    async () => {
      const port = await freePort();
      const { all, key, socket } = await gateway({
        PORT: String(port),
        WEBHOOK_BASE_URL: `http://127.0.0.1:${port}`,
        WEBHOOK_BACKSTOP_POLL_MS: "60000",
      });
      const { messages, last } = await run(all, key, socket, "a lighthouse in fog");
      expect(last.generation.status).toBe("SUCCEEDED");
      expect(last.generation.provider).toBe("simulated");
      expect(messages.some((m) => m.type === "PROGRESS")).toBe(true);
      const png = await fetch(last.generation.outputs[0].url);
      expect(png.headers.get("content-type")).toBe("image/png");
      // The provider called back; nothing was refused.
      expect(all.logs.some((l) => l.json?.msg === "webhook refused")).toBe(false);
      expect(await all.stop()).toBe(0);
    },
    TIMEOUT,
  );

  it(
    "polls the provider when no public URL is configured, and fails over its failures",
    async () => {
      const { all, key, socket } = await gateway({ POLL_MIN_MS: "50", POLL_MAX_MS: "200" });
      const ok = await run(all, key, socket, "a lighthouse in rain");
      expect(ok.last.generation.status).toBe("SUCCEEDED");
      expect(ok.messages.some((m) => m.type === "PROGRESS")).toBe(true);

      const failed = await run(all, key, socket, "a lighthouse that breaks [sim:fail]");
      expect(failed.last.generation.status).toBe("FAILED");
      expect(failed.last.generation.attempts).toEqual([
        { status: "FAILED" },
        { status: "FAILED" },
        { status: "FAILED" },
      ]);
      expect(await all.stop()).toBe(0);
    },
    TIMEOUT,
  );
});
