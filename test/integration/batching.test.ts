import { Client } from "pg";
import { FakeOpenAI } from "../helpers/fake-openai";
import { gql, wsClient, type WsClient } from "../helpers/graphql";
import { adminKey, createTestEnv, partner, startTestServer } from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) {
  generate(input: $input) { id status estimatedCostUsd queuePosition }
}`;
const GET = `query($id: ID!) { generation(id: $id) { id status } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type
    generation { id status costUsd provider error { code }
      attempts { number status provider batchId costUsd } outputs { url contentType } }
  }
}`;

type Watched = {
  generationUpdated: {
    type: string;
    generation: {
      id: string;
      status: string;
      costUsd: number | null;
      provider: string | null;
      error: { code: string } | null;
      attempts: Array<{
        number: number;
        status: string;
        provider: string;
        batchId: string | null;
        costUsd: number | null;
      }>;
      outputs: Array<{ url: string; contentType: string }>;
    };
  };
};

const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELED"]);

/**
 * The batch row is closed after its results were fanned out (so a worker dying mid-way leaves
 * it open for the reconciler): the generations' events come first. This waits on that row,
 * re-reading it until it is closed or the deadline passes.
 */
async function closedBatches(db: Client, count: number, deadlineMs = 10_000): Promise<any[]> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const { rows } = await db.query(
      `SELECT id, provider, model, status, size, succeeded, failed, created_at, submitted_at,
              provider_batch_id FROM batches WHERE status IN ('COMPLETED', 'FAILED') ORDER BY created_at`,
    );
    if (rows.length >= count || Date.now() > until) return rows;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A gengate (api and worker in this process) with batching settings, and its helpers. */
async function batchingServer(overrides: Record<string, string>) {
  const env = await createTestEnv();
  const server = await startTestServer(env, { overrides });
  const key = (await partner(server, await adminKey(server))).key;
  const db = new Client({ connectionString: env.databaseUrl });
  await db.connect();
  return { env, server, key, db };
}

describe("batching of BATCH-priority generations", () => {
  const sockets: WsClient[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    for (const c of cleanups.reverse()) await c();
  });

  async function setup(overrides: Record<string, string>) {
    const s = await batchingServer(overrides);
    cleanups.push(async () => {
      await s.db.end();
      await s.server.stop();
      await s.env.cleanup();
    });
    const socket = wsClient(s.server.url, s.key);
    sockets.push(socket);
    const generate = async (prompt: string, extra: Record<string, unknown> = {}) => {
      const res = await gql(
        s.server.url,
        GENERATE,
        {
          input: {
            userId: "batch-user",
            mediaType: "IMAGE",
            model: "sim-image-fast",
            prompt,
            width: 64,
            height: 64,
            priority: "BATCH",
            cache: "BYPASS",
            ...extra,
          },
        },
        s.key,
      );
      if (!res.data) throw new Error(JSON.stringify(res.errors));
      return res.data.generate as { id: string; status: string; estimatedCostUsd: number };
    };
    /** Resolves with the generation's final state, from its subscription. */
    const finished = async (id: string) => {
      const sub = socket.subscribe<Watched>(WATCH, { id });
      const last = await sub.until((m) => FINAL.has(m.generationUpdated.generation.status));
      sub.stop();
      return last.generationUpdated;
    };
    const status = async (id: string) =>
      (await gql(s.server.url, GET, { id }, s.key)).data!.generation.status as string;
    return { ...s, generate, finished, status };
  }

  describe("size trigger", () => {
    let t: Awaited<ReturnType<typeof setup>>;
    beforeAll(async () => {
      // The timeout is out of reach: only the size can send a batch.
      t = await setup({ BATCH_SIZE: "3", BATCH_TIMEOUT_SECONDS: "3600" });
    });

    it("holds BATCHED generations until the batch is full, then sends them together at the batch price", async () => {
      const first = await t.generate("a red kite");
      const second = await t.generate("a blue kite");
      expect(first.status).toBe("BATCHED");
      expect(second.status).toBe("BATCHED");
      // Batch priority is estimated at half the price of sim-image-fast ($0.003 an image).
      expect(first.estimatedCostUsd).toBe(0.0015);

      // A collector pass (what every worker's reconciler runs) leaves a group of two waiting.
      await t.server.app.reconciler.runOnce();
      expect(await t.status(first.id)).toBe("BATCHED");
      expect(await t.status(second.id)).toBe("BATCHED");
      const { rows: none } = await t.db.query(`SELECT count(*)::int AS n FROM batches`);
      expect(none[0].n).toBe(0);

      const third = await t.generate("a green kite");
      const results = await Promise.all([first, second, third].map((g) => t.finished(g.id)));

      const batchIds = new Set<string | null>();
      for (const r of results) {
        expect(r.generation.status).toBe("SUCCEEDED");
        expect(r.generation.provider).toBe("simulated");
        expect(r.generation.outputs).toHaveLength(1);
        expect(r.generation.costUsd).toBe(0.0015);
        expect(r.generation.attempts).toHaveLength(1);
        expect(r.generation.attempts[0]!.status).toBe("SUCCEEDED");
        batchIds.add(r.generation.attempts[0]!.batchId);
      }
      expect(batchIds.size).toBe(1);
      const [batchId] = [...batchIds];
      expect(batchId).toEqual(expect.any(String));

      const rows = await closedBatches(t.db, 1);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        id: batchId,
        provider: "simulated",
        model: "sim-image-fast",
        status: "COMPLETED",
        size: 3,
        succeeded: 3,
        failed: 0,
        provider_batch_id: expect.any(String),
      });
      // Usage rows carry the batch price: budgets and reports see what was paid.
      const { rows: usage } = await t.db.query(
        `SELECT cost_usd FROM usage_records WHERE generation_id = ANY($1::uuid[])`,
        [[first.id, second.id, third.id]],
      );
      expect(usage.map((u) => Number(u.cost_usd))).toEqual([0.0015, 0.0015, 0.0015]);
    });

    it("sends a failed batch item back through the per-request path along the chain", async () => {
      // [sim:fail] fails in the batch and again alone, on every simulated provider.
      const g = await Promise.all([
        t.generate("a kite [sim:fail]"),
        t.generate("a kite, second"),
        t.generate("a kite, third"),
      ]);
      const [failed, ...ok] = await Promise.all(g.map((x) => t.finished(x.id)));
      for (const r of ok) expect(r!.generation.status).toBe("SUCCEEDED");
      expect(failed!.generation.status).toBe("FAILED");
      const attempts = failed!.generation.attempts;
      expect(attempts).toHaveLength(3);
      expect(attempts[0]!.batchId).toEqual(expect.any(String));
      expect(attempts.slice(1).map((a) => a.batchId)).toEqual([null, null]);
      expect(attempts.map((a) => a.provider)).toEqual(["simulated", "simulated", "simulated"]);
    });
  });

  describe("through OpenAI's Batch API", () => {
    const API_KEY = "sk-batching-key";
    let fake: FakeOpenAI;
    let t: Awaited<ReturnType<typeof setup>>;
    beforeAll(async () => {
      fake = await FakeOpenAI.start({ apiKey: API_KEY });
      cleanups.push(() => fake.close());
      t = await setup({
        BATCH_SIZE: "3",
        BATCH_TIMEOUT_SECONDS: "3600",
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: fake.url,
      });
    });

    it("sends BATCH gpt-image-1.5 generations as one OpenAI batch and stores each image at half price", async () => {
      const image = { model: "gpt-image-1.5", width: 1024, height: 1024 };
      const created = await Promise.all(
        ["a harbour at dawn", "a harbour at noon", "a harbour at dusk"].map((p) =>
          t.generate(p, image),
        ),
      );
      // gpt-image-1.5 lists at $0.034 an image; OpenAI's batch discount is half.
      expect(created.map((g) => [g.status, g.estimatedCostUsd])).toEqual([
        ["BATCHED", 0.017],
        ["BATCHED", 0.017],
        ["BATCHED", 0.017],
      ]);
      const results = Promise.all(created.map((g) => t.finished(g.id)));

      // OpenAI holds the batch until the test lets it finish.
      const batch = await fake.nextBatch();
      const input = fake.files.get(batch.input_file_id)!.content.toString().trimEnd().split("\n");
      expect(input.map((l) => JSON.parse(l).custom_id).sort()).toEqual(
        created.map((g) => `${g.id}.1`).sort(),
      );
      expect(batch.metadata).toMatchObject({ gengate_model: "gpt-image-1.5" });
      fake.advance(batch.id, "in_progress");
      fake.finish(batch.id);

      const done = await results;
      for (const r of done) {
        expect(r.generation).toMatchObject({
          status: "SUCCEEDED",
          provider: "openai",
          costUsd: 0.017,
        });
        expect(r.generation.attempts).toHaveLength(1);
        expect(r.generation.attempts[0]).toMatchObject({ status: "SUCCEEDED", provider: "openai" });
        expect(r.generation.attempts[0]!.batchId).toEqual(expect.any(String));
        expect(r.generation.outputs).toHaveLength(1);
        const stored = await fetch(r.generation.outputs[0]!.url);
        expect(stored.status).toBe(200);
        expect(stored.headers.get("content-type")).toBe("image/png");
        // The PNG signature: the bytes OpenAI sent back, decoded and stored.
        expect(
          Buffer.from(await stored.arrayBuffer())
            .subarray(1, 4)
            .toString(),
        ).toBe("PNG");
      }
      expect(new Set(done.map((r) => r.generation.attempts[0]!.batchId)).size).toBe(1);
      expect(fake.batches).toHaveLength(1);
      expect(fake.requests.filter((r) => r.path === "/v1/images/generations")).toHaveLength(0);

      const rows = await closedBatches(t.db, 1);
      expect(rows[0]).toMatchObject({
        provider: "openai",
        model: "gpt-image-1.5",
        status: "COMPLETED",
        size: 3,
        succeeded: 3,
        provider_batch_id: batch.id,
      });
      const { rows: usage } = await t.db.query(
        `SELECT cost_usd FROM usage_records WHERE generation_id = ANY($1::uuid[])`,
        [created.map((g) => g.id)],
      );
      expect(usage.map((u) => Number(u.cost_usd))).toEqual([0.017, 0.017, 0.017]);
    });
  });

  describe("an expired OpenAI batch", () => {
    it("sends what did not run as plain requests at full price, the batch's hours not counted against MAX_GENERATION_SECONDS", async () => {
      const API_KEY = "sk-expiry-key";
      const fake = await FakeOpenAI.start({ apiKey: API_KEY });
      cleanups.push(() => fake.close());
      const t = await setup({
        BATCH_SIZE: "3",
        BATCH_TIMEOUT_SECONDS: "3600",
        MAX_GENERATION_SECONDS: "1",
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: fake.url,
      });
      const image = { model: "gpt-image-1.5", width: 1024, height: 1024 };
      const created = await Promise.all(
        ["a mill", "a barn", "a silo"].map((p) => t.generate(p, image)),
      );
      const results = Promise.all(created.map((g) => t.finished(g.id)));
      const batch = await fake.nextBatch();
      // The time under test: the generations outlive MAX_GENERATION_SECONDS inside the batch
      // (their clocks are moved back rather than waited out).
      await t.db.query(
        `UPDATE generations SET created_at = created_at - interval '10 seconds',
                started_at = started_at - interval '10 seconds'
          WHERE id = ANY($1::uuid[])`,
        [created.map((g) => g.id)],
      );
      await t.db.query(
        `UPDATE attempts SET started_at = started_at - interval '10 seconds'
          WHERE generation_id = ANY($1::uuid[])`,
        [created.map((g) => g.id)],
      );
      fake.finish(batch.id, { status: "expired", run: 1 });

      const done = await results;
      const byCost = done.map((r) => r.generation).sort((a, b) => a.costUsd! - b.costUsd!);
      expect(byCost.map((g) => g.status)).toEqual(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]);
      // One ran in the batch at half price; two expired and ran alone at the full price.
      expect(byCost.map((g) => g.costUsd)).toEqual([0.017, 0.034, 0.034]);
      expect(byCost[0]!.attempts.map((a) => a.batchId !== null)).toEqual([true]);
      for (const g of byCost.slice(1)) {
        expect(g.attempts.map((a) => [a.status, a.batchId !== null])).toEqual([
          ["FAILED", true],
          ["SUCCEEDED", false],
        ]);
      }
      expect(fake.requests.filter((r) => r.path === "/v1/images/generations")).toHaveLength(2);
    });
  });

  describe("an abandoned OpenAI batch", () => {
    it("is canceled at OpenAI once every generation in it was canceled", async () => {
      const API_KEY = "sk-abandon-key";
      const fake = await FakeOpenAI.start({ apiKey: API_KEY });
      cleanups.push(() => fake.close());
      const t = await setup({
        BATCH_SIZE: "2",
        BATCH_TIMEOUT_SECONDS: "3600",
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: fake.url,
      });
      const image = { model: "gpt-image-1.5", width: 1024, height: 1024 };
      const created = await Promise.all(["a fox", "a hare"].map((p) => t.generate(p, image)));
      const batch = await fake.nextBatch();
      fake.advance(batch.id, "in_progress");
      for (const g of created) {
        const res = await gql(
          t.server.url,
          `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`,
          { id: g.id },
          t.key,
        );
        expect(res.data?.cancelGeneration.status).toBe("CANCELED");
      }

      const rows = await closedBatches(t.db, 1);
      expect(rows[0]).toMatchObject({ provider_batch_id: batch.id, status: "FAILED" });
      expect(fake.batch(batch.id).status).toBe("cancelling");
      expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toContain(
        `POST /v1/batches/${batch.id}/cancel`,
      );
    });
  });

  describe("timeout trigger", () => {
    let t: Awaited<ReturnType<typeof setup>>;
    beforeAll(async () => {
      // The size is out of reach: only the oldest generation's wait can send a batch.
      t = await setup({ BATCH_SIZE: "100", BATCH_TIMEOUT_SECONDS: "0.3" });
    });

    it("sends a small batch once its oldest generation has waited BATCH_TIMEOUT_SECONDS", async () => {
      const created = await Promise.all([t.generate("a small boat"), t.generate("a tall ship")]);
      expect(created.map((g) => g.status)).toEqual(["BATCHED", "BATCHED"]);
      const results = await Promise.all(created.map((g) => t.finished(g.id)));
      expect(results.map((r) => r.generation.status)).toEqual(["SUCCEEDED", "SUCCEEDED"]);
      const batchIds = new Set(results.map((r) => r.generation.attempts[0]!.batchId));
      expect(batchIds.size).toBe(1);
      const rows = await closedBatches(t.db, 1);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ size: 2, status: "COMPLETED", succeeded: 2 });
      // Collected no earlier than the timeout after the oldest was created.
      const { rows: oldest } = await t.db.query(
        `SELECT min(created_at) AS at FROM generations WHERE id = ANY($1::uuid[])`,
        [created.map((g) => g.id)],
      );
      expect(rows[0].created_at.getTime() - oldest[0].at.getTime()).toBeGreaterThanOrEqual(300);
    });
  });

  describe("two workers", () => {
    it("never puts a generation in two batches nor sends one twice", async () => {
      const overrides = { BATCH_SIZE: "4", BATCH_TIMEOUT_SECONDS: "0.3" };
      const env = await createTestEnv();
      const api = await startTestServer(env, { api: true, worker: false, overrides });
      const workers = [
        await startTestServer(env, { api: false, worker: true, overrides }),
        await startTestServer(env, { api: false, worker: true, overrides }),
      ];
      const db = new Client({ connectionString: env.databaseUrl });
      await db.connect();
      cleanups.push(async () => {
        await db.end();
        for (const w of workers) await w.stop();
        await api.stop();
        await env.cleanup();
      });
      const key = (await partner(api, await adminKey(api))).key;
      const socket = wsClient(api.url, key);
      sockets.push(socket);

      const ids = await Promise.all(
        Array.from({ length: 22 }, async (_, i) => {
          const res = await gql(
            api.url,
            GENERATE,
            {
              input: {
                userId: `u-${i % 3}`,
                mediaType: "IMAGE",
                model: "sim-image-fast",
                prompt: `lantern number ${i}`,
                width: 64,
                height: 64,
                priority: "BATCH",
                cache: "BYPASS",
              },
            },
            key,
          );
          expect(res.data?.generate.status).toBe("BATCHED");
          return res.data!.generate.id as string;
        }),
      );
      // Both workers' collectors race over the same rows, besides the wake-up jobs.
      await Promise.all([
        ...workers.map((w) => w.app.reconciler.runOnce()),
        ...workers.map((w) => w.app.reconciler.runOnce()),
      ]);
      const results = await Promise.all(
        ids.map(async (id) => {
          const sub = socket.subscribe<Watched>(WATCH, { id });
          const last = await sub.until((m) => FINAL.has(m.generationUpdated.generation.status));
          sub.stop();
          return last.generationUpdated.generation;
        }),
      );
      expect(results.every((g) => g.status === "SUCCEEDED")).toBe(true);
      // One attempt each, all in a batch.
      for (const g of results) {
        expect(g.attempts).toHaveLength(1);
        expect(g.attempts[0]!.batchId).toEqual(expect.any(String));
      }
      const { rows: members } = await db.query(
        `SELECT generation_id, count(*)::int AS n FROM attempts GROUP BY generation_id`,
      );
      expect(members).toHaveLength(22);
      expect(members.every((m) => m.n === 1)).toBe(true);

      // What the provider was sent: the simulated batch id carries its items' custom ids.
      const { rows: batches } = await db.query(
        `SELECT size, provider_batch_id FROM batches WHERE provider_batch_id IS NOT NULL`,
      );
      expect(batches.reduce((n, b) => n + b.size, 0)).toBe(22);
      const sent = batches.flatMap((b) =>
        (
          JSON.parse(
            Buffer.from((b.provider_batch_id as string).slice(5), "base64url").toString(),
          ) as { items: Array<{ c: string }> }
        ).items.map((item) => item.c),
      );
      expect(sent).toHaveLength(22);
      expect(new Set(sent)).toEqual(new Set(ids.map((id) => `${id}.1`)));
      // Never more than BATCH_SIZE in one batch.
      expect(batches.every((b) => b.size >= 1 && b.size <= 4)).toBe(true);
    });
  });
});
