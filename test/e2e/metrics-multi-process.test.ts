import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  assertBuilt,
  createAdminKey,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
} from "../helpers/process";
import { parsePrometheusText, type Exposition } from "../helpers/prometheus";
import { createTestEnv, type TestEnv } from "../helpers/test-app";

/**
 * Metrics as Prometheus sees a deployment: one api and two workers, each scraped on its own
 * port. Summed over the processes, the counters equal what happened; the service-wide gauges
 * come from the api only.
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status model } }`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { generation { id status } } }`;
const N = 8;

/** The sum of every sample of `name` across scrapes whose labels include `labels`. */
function sum(scrapes: Exposition[], name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const s of scrapes)
    for (const sample of s.samples)
      if (sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v))
        total += sample.value;
  return total;
}

async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return parsePrometheusText(await res.text());
}

describe("metrics of separate api and worker processes", () => {
  let env: TestEnv;
  let socket: WsClient;

  beforeAll(() => {
    assertBuilt();
  });

  afterAll(async () => {
    await socket?.dispose().catch(() => undefined);
    await stopAllGengates();
    await env?.cleanup();
  });

  it("add up across two workers to the number of generations, with global gauges from the api only", async () => {
    env = await createTestEnv();
    const vars = env.env({ LOG_LEVEL: "info" });
    const api = await spawnGengate("api", vars);
    const workers: GengateProcess[] = [];
    const workerUrls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const w = await spawnGengate("worker", { ...vars, METRICS_PORT: "0" });
      const line = await w.waitForLog((l) => l.json?.msg === "metrics listening");
      workers.push(w);
      workerUrls.push(`http://127.0.0.1:${line.json!.port}`);
    }
    const admin = await createAdminKey(vars);
    const account = await gql(
      api.url,
      `mutation { createAccount(name: "metrics") { apiKey { key } } }`,
      {},
      admin,
    );
    const key = account.data!.createAccount.apiKey.key as string;
    socket = wsClient(api.url, key);

    const ids: string[] = [];
    let model = "";
    for (let i = 0; i < N; i++) {
      const res = await gql(
        api.url,
        GENERATE,
        {
          input: {
            userId: "m-user",
            mediaType: "IMAGE",
            prompt: `lighthouse number ${i}`,
            width: 64,
            height: 64,
            cache: "BYPASS",
          },
        },
        key,
      );
      ids.push(res.data!.generate.id as string);
      model = res.data!.generate.model as string;
    }
    await Promise.all(
      ids.map((id) =>
        socket
          .subscribe(WATCH, { id })
          .until((m) => m.generationUpdated.generation.status === "SUCCEEDED"),
      ),
    );

    const fromApi = await scrape(api.url);
    const fromWorkers = await Promise.all(workerUrls.map(scrape));
    const all = [fromApi, ...fromWorkers];

    expect(sum(all, "gengate_generations_total", { model })).toBe(N);
    expect(
      sum(all, "gengate_generations_finished_total", {
        model,
        provider: "simulated",
        status: "SUCCEEDED",
      }),
    ).toBe(N);
    expect(sum(all, "gengate_generation_seconds_count", { model })).toBe(N);
    expect(sum(all, "gengate_queue_wait_seconds_count")).toBe(N);
    expect(sum(all, "gengate_provider_seconds_count", { provider: "simulated" })).toBe(N);
    // The workers ran them, the api only accepted them.
    expect(sum(fromWorkers, "gengate_generations_finished_total")).toBe(N);
    expect(sum([fromApi], "gengate_generations_finished_total")).toBe(0);
    // Service-wide gauges: the api's, and nobody else's.
    expect(fromApi.types.get("gengate_queue_depth")).toBe("gauge");
    for (const w of fromWorkers) {
      expect(w.samples.some((s) => s.name === "gengate_queue_depth")).toBe(false);
      expect(w.samples.some((s) => s.name === "gengate_circuit_open")).toBe(false);
    }
    // Nothing says which process a series came from: Prometheus adds `instance`.
    for (const s of all.flatMap((e) => e.samples))
      expect(Object.keys(s.labels)).not.toEqual(expect.arrayContaining(["role"]));

    for (const w of workers) expect(await w.stop()).toBe(0);
    expect(await api.stop()).toBe(0);
  }, 90_000);
});
