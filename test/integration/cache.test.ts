import Redis from "ioredis";
import { TEST_REDIS_URL } from "../helpers/redis";
import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import { parsePrometheusText, valueOf } from "../helpers/prometheus";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";
import { exactCacheKey } from "../../src/cache/cache-key";
import { LexicalEmbedder } from "../../src/cache/lexical.embedder";

const FIELDS = `id status model seed userId cached costUsd estimatedCostUsd provider prompt
  cacheHit { kind similarity sourceGenerationId originalPrompt }
  outputs { url contentType width height }
  quality { passed score checks { name passed } }
  error { code }`;
const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { ${FIELDS} } }`;
const GET = `query($id: ID!) { generation(id: $id) { ${FIELDS} attempts { number } } }`;
const WATCH_USER = `subscription($userId: ID) {
  generationsUpdated(userId: $userId) { type generation { id status cached costUsd } }
}`;

interface Gen {
  id: string;
  status: string;
  model: string;
  seed: number;
  userId: string;
  cached: boolean;
  costUsd: number | null;
  estimatedCostUsd: number;
  provider: string | null;
  prompt: string;
  cacheHit: {
    kind: string;
    similarity: number | null;
    sourceGenerationId: string;
    originalPrompt: string;
  } | null;
  outputs: Array<{ url: string; contentType: string; width: number; height: number }>;
  error: { code: string } | null;
  quality?: unknown;
  attempts?: Array<{ number: number }>;
}

describe("caching: exact, semantic and in flight", () => {
  let env: TestEnv;
  let server: TestServer;
  let apiOnly: TestServer;
  let admin: string;
  let acme: { accountId: string; key: string };
  let globex: { accountId: string; key: string };
  let redis: Redis;
  const sockets: WsClient[] = [];
  let userSeq = 0;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { overrides: { SIM_LATENCY_MS: "150" } });
    // A second api process without a worker: in-flight joins must work across processes.
    apiOnly = await startTestServer(env, { worker: false });
    admin = await adminKey(server);
    acme = await partner(server, admin, "acme");
    globex = await partner(server, admin, "globex");
    redis = new Redis(TEST_REDIS_URL);
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await apiOnly.stop();
    await server.stop();
    redis.disconnect();
    await env.cleanup();
  });

  const sql = <T = Record<string, unknown>>(q: string, params: unknown[] = []) =>
    server.app.db.dataSource.query(q, params) as Promise<T[]>;
  const one = async <T = Record<string, unknown>>(q: string, params: unknown[] = []) =>
    (await sql<T>(q, params))[0]!;

  function input(prompt: string, extra: Record<string, unknown> = {}) {
    return {
      userId: `user-${++userSeq}`,
      mediaType: "IMAGE",
      model: "sim-image-fast",
      prompt,
      width: 512,
      height: 512,
      ...extra,
    };
  }

  async function generate(
    i: Record<string, unknown>,
    key = acme.key,
    on: TestServer = server,
  ): Promise<Gen> {
    const res = await gql<{ generate: Gen }>(on.url, GENERATE, { input: i }, key);
    if (!res.data) throw new Error(JSON.stringify(res.errors));
    return res.data.generate;
  }

  async function get(id: string, key = acme.key): Promise<Gen> {
    const res = await gql<{ generation: Gen }>(server.url, GET, { id }, key);
    return res.data!.generation;
  }

  /** Creates a generation and waits for its final state on the user's stream. */
  async function paid(i: Record<string, unknown>, key = acme.key): Promise<Gen> {
    const ws = wsClient(server.url, key);
    sockets.push(ws);
    const rec = ws.subscribe(WATCH_USER, { userId: i.userId });
    // The stream's first message is the subscription being live (the user has nothing yet),
    // so start it, then wait for the first generation event after creating.
    const first = await generate(i, key);
    expect(first.status).toBe("QUEUED");
    expect(first.cached).toBe(false);
    await rec.until(
      (m) =>
        m.generationsUpdated.generation.id === first.id &&
        m.generationsUpdated.type !== "QUEUED" &&
        ["SUCCEEDED", "FAILED"].includes(m.generationsUpdated.generation.status),
    );
    rec.stop();
    return get(first.id, key);
  }

  describe("exact", () => {
    let source: Gen;

    beforeAll(async () => {
      source = await paid(input("A Lighthouse   at DUSK"));
      expect(source.status).toBe("SUCCEEDED");
    });

    it("answers an identical request in the same response, SUCCEEDED, cost 0", async () => {
      const hit = await generate(input("  a lighthouse at dusk "), globex.key);
      expect(hit.status).toBe("SUCCEEDED");
      expect(hit.cached).toBe(true);
      expect(hit.costUsd).toBe(0);
      expect(hit.estimatedCostUsd).toBe(0);
      expect(hit.cacheHit).toEqual({
        kind: "EXACT",
        similarity: null,
        sourceGenerationId: source.id,
        originalPrompt: "A Lighthouse   at DUSK",
      });
      expect(hit.outputs).toHaveLength(1);
      expect(hit.outputs[0]!.width).toBe(512);
      // The outputs are the source's, and so is the quality gate's report on them.
      expect(source.quality).toMatchObject({ passed: true });
      expect(hit.quality).toEqual(source.quality);
      // The stored output is served for the hit as for its source.
      const res = await fetch(hit.outputs[0]!.url);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("image/png");
      await res.arrayBuffer();
      // Derived seed: the same normalized prompt gives the same seed.
      expect(hit.seed).toBe(source.seed);
      const [usage] = await sql<{
        cost_usd: string;
        cached: boolean;
        cache_hit_kind: string;
        saved_usd: string;
      }>(
        `SELECT cost_usd, cached, cache_hit_kind, saved_usd FROM usage_records WHERE generation_id = $1`,
        [hit.id],
      );
      expect(usage).toMatchObject({ cached: true, cache_hit_kind: "EXACT" });
      expect(Number(usage!.cost_usd)).toBe(0);
      expect(Number(usage!.saved_usd)).toBeCloseTo(source.costUsd!, 6);
    });

    it("stores the result in Redis under the key, with the TTL", async () => {
      const key = exactCacheKey({
        model: "sim-image-fast",
        mediaType: "IMAGE",
        prompt: "a lighthouse at dusk",
        negativePrompt: null,
        width: 512,
        height: 512,
        seed: source.seed,
      });
      const redisKey = `${env.redisPrefix}:kv:cache:exact:${key}`;
      expect(await redis.get(redisKey)).toBe(source.id);
      const ttl = await redis.pttl(redisKey);
      expect(ttl).toBeGreaterThan(23 * 3600_000);
      expect(ttl).toBeLessThanOrEqual(24 * 3600_000);
    });

    it("is still an exact hit when Redis has lost the entry", async () => {
      const src = await paid(input("a weathervane on a barn"));
      const keys = await redis.keys(`${env.redisPrefix}:kv:cache:exact:*`);
      for (const k of keys) if ((await redis.get(k)) === src.id) await redis.del(k);
      const hit = await generate(input("A weathervane on a barn"));
      expect(hit.cacheHit).toMatchObject({
        kind: "EXACT",
        sourceGenerationId: src.id,
        similarity: null,
      });
      // Without the semantic cache, Postgres still finds it when the request would queue.
      const bypassSemantic = await startTestServer(env, {
        worker: false,
        overrides: { SEMANTIC_CACHE: "false" },
      });
      try {
        const again = await generate(input("a weathervane on a barn "), acme.key, bypassSemantic);
        expect(again.cacheHit).toMatchObject({ kind: "EXACT", sourceGenerationId: src.id });
      } finally {
        await bypassSemantic.stop();
      }
    });

    it.each([
      ["size", { width: 768 }],
      ["model", { model: "sim-image-standard" }],
      ["seed", { seed: 7 }],
      ["negative prompt", { negativePrompt: "fog" }],
    ])("never crosses a different %s", async (_name, change) => {
      const g = await generate(input("a lighthouse at dusk", change));
      expect(g.cached).toBe(false);
      expect(g.cacheHit).toBeNull();
      expect(g.status).toBe("QUEUED");
    });

    it("BYPASS neither reads nor stores", async () => {
      const bypass = await generate(input("a lighthouse at dusk", { cache: "BYPASS" }));
      expect(bypass.status).toBe("QUEUED");
      expect(bypass.cached).toBe(false);
      const fresh = await paid(input("a bypassed kite", { cache: "BYPASS" }));
      expect(fresh.status).toBe("SUCCEEDED");
      const again = await generate(input("a bypassed kite"));
      expect(again.cached).toBe(false);
    });

    it("REFRESH skips the lookup and its result answers the next request", async () => {
      const refreshed = await paid(input("a lighthouse at dusk", { cache: "REFRESH" }));
      expect(refreshed.status).toBe("SUCCEEDED");
      expect(refreshed.cached).toBe(false);
      const hit = await generate(input("a lighthouse at dusk"));
      expect(hit.cacheHit?.kind).toBe("EXACT");
      expect(hit.cacheHit?.sourceGenerationId).toBe(refreshed.id);
    });

    it("an expired result is not served, and its Redis entry goes", async () => {
      const src = await paid(input("an hourglass on a desk"));
      await sql(`UPDATE generations SET completed_at = now() - interval '25 hours' WHERE id = $1`, [
        src.id,
      ]);
      const miss = await generate(input("an hourglass on a desk"));
      expect(miss.cached).toBe(false);
      expect(miss.status).toBe("QUEUED");
    });

    it("keeps an idempotency key's answer on a hit", async () => {
      const i = input("a lighthouse at dusk", { idempotencyKey: "idem-hit" });
      const a = await generate(i);
      const b = await generate(i);
      expect(a.cached).toBe(true);
      expect(b.id).toBe(a.id);
    });
  });

  describe("semantic", () => {
    let source: Gen;

    beforeAll(async () => {
      source = await paid(input("sunset over the ocean"));
    });

    it("serves a reordered prompt with stop words changed, with its similarity", async () => {
      const hit = await generate(input("the ocean at sunset"), globex.key);
      expect(hit.status).toBe("SUCCEEDED");
      expect(hit.cacheHit?.kind).toBe("SEMANTIC");
      expect(hit.cacheHit?.sourceGenerationId).toBe(source.id);
      expect(hit.cacheHit?.originalPrompt).toBe("sunset over the ocean");
      expect(hit.cacheHit!.similarity!).toBeGreaterThanOrEqual(0.85);
      expect(hit.costUsd).toBe(0);
    });

    it("does not serve a prompt that means something else", async () => {
      const g = await generate(input("sunset over the desert"));
      expect(g.cached).toBe(false);
    });

    it("never crosses sizes or models", async () => {
      expect((await generate(input("the ocean at sunset", { width: 640 }))).cached).toBe(false);
      expect(
        (await generate(input("the ocean at sunset", { model: "sim-image-standard" }))).cached,
      ).toBe(false);
    });

    it("is not used when the caller chose a seed", async () => {
      const g = await generate(input("the ocean at sunset", { seed: 42 }));
      expect(g.cached).toBe(false);
    });

    it("does not serve an expired entry", async () => {
      const src = await paid(input("a violin on a chair"));
      await sql(`UPDATE semantic_cache_entries SET expires_at = now() WHERE generation_id = $1`, [
        src.id,
      ]);
      expect((await generate(input("violins on chairs"))).cached).toBe(false);
      // The reconciler's pass deletes what lookups already ignore.
      await server.app.reconciler.runOnce();
      const { n } = await one<{ n: number }>(
        `SELECT count(*)::int AS n FROM semantic_cache_entries WHERE generation_id = $1`,
        [src.id],
      );
      expect(n).toBe(0);
    });

    it("an account that opts out neither gets nor gives semantic hits; exact hits stay", async () => {
      const initech = await partner(server, admin, "initech");
      const off = await gql(
        server.url,
        `mutation { setSemanticCache(enabled: false) { id semanticCache } }`,
        {},
        initech.key,
      );
      expect(off.data!.setSemanticCache).toEqual({ id: initech.accountId, semanticCache: false });
      // Gets none: a paraphrase of acme's prompt is not served to initech.
      expect((await generate(input("ocean at the sunset"), initech.key)).cached).toBe(false);
      // Gives none: initech's prompt does not answer acme's paraphrase.
      const own = await paid(input("a paper crane on a windowsill"), initech.key);
      const { n } = await one<{ n: number }>(
        `SELECT count(*)::int AS n FROM semantic_cache_entries WHERE generation_id = $1`,
        [own.id],
      );
      expect(n).toBe(0);
      expect((await generate(input("paper cranes on the windowsill"))).cached).toBe(false);
      // Exact hits are not semantic matching: they still apply.
      const exact = await generate(input("a paper crane on a windowsill"), initech.key);
      expect(exact.cacheHit?.kind).toBe("EXACT");
    });

    it("turning semantic matching off removes the account's stored prompts at once", async () => {
      const umbrella = await partner(server, admin, "umbrella");
      const own = await paid(input("a tin robot on a shelf"), umbrella.key);
      expect((await generate(input("tin robots on shelves"))).cacheHit?.kind).toBe("SEMANTIC");
      await gql(
        server.url,
        `mutation { setSemanticCache(enabled: false) { id } }`,
        {},
        umbrella.key,
      );
      const { n } = await one<{ n: number }>(
        `SELECT count(*)::int AS n FROM semantic_cache_entries WHERE generation_id = $1`,
        [own.id],
      );
      expect(n).toBe(0);
      expect((await generate(input("a tin robot on shelves"))).cached).toBe(false);
    });

    it("refuses a PARTNER naming another account, and a bad account id", async () => {
      const other = await gql(
        server.url,
        `mutation($a: ID) { setSemanticCache(enabled: false, accountId: $a) { id } }`,
        { a: globex.accountId },
        acme.key,
      );
      expect(errorCode(other)).toBe("NOT_FOUND");
      const bad = await gql(
        server.url,
        `mutation($a: ID) { setSemanticCache(enabled: false, accountId: $a) { id } }`,
        { a: "nope" },
        admin,
      );
      expect(errorCode(bad)).toBe("BAD_USER_INPUT");
    });
  });

  describe("semantic threshold", () => {
    it("hits at the threshold and misses just above it", async () => {
      const embedder = new LexicalEmbedder();
      const [a, b] = await embedder.embed(["sunrise over a harbour", "a harbour at sunrise"]);
      const similarity = a!.reduce((s, x, i) => s + x * b![i]!, 0);
      expect(similarity).toBeGreaterThanOrEqual(0.85);
      expect(similarity).toBeLessThan(0.99);
      const src = await paid(input("sunrise over a harbour"));
      const at = await startTestServer(env, {
        worker: false,
        overrides: { SEMANTIC_CACHE_THRESHOLD: String(similarity - 1e-6) },
      });
      const above = await startTestServer(env, {
        worker: false,
        overrides: { SEMANTIC_CACHE_THRESHOLD: String(Math.min(1, similarity + 0.01)) },
      });
      try {
        const hit = await generate(input("a harbour at sunrise"), acme.key, at);
        expect(hit.cacheHit?.kind).toBe("SEMANTIC");
        expect(hit.cacheHit?.sourceGenerationId).toBe(src.id);
        expect(hit.cacheHit!.similarity!).toBeCloseTo(similarity, 3);
        const miss = await generate(input("a harbour at sunrise"), acme.key, above);
        expect(miss.cached).toBe(false);
      } finally {
        await at.stop();
        await above.stop();
      }
    });
  });

  describe("in flight", () => {
    it("50 identical concurrent requests over two api processes pay exactly once", async () => {
      const prompt = "a glass whale in the sky";
      const userId = "inflight-user";
      const ws = wsClient(server.url, acme.key);
      sockets.push(ws);
      const rec = ws.subscribe(WATCH_USER, { userId });
      const done = new Set<string>();
      const all = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          generate(
            { ...input(prompt), userId, width: 512, height: 512 },
            acme.key,
            i % 2 ? apiOnly : server,
          ),
        ),
      );
      const ids = new Set(all.map((g) => g.id));
      expect(ids.size).toBe(50);
      const leaders = all.filter((g) => !g.cached);
      expect(leaders).toHaveLength(1);
      const leader = leaders[0]!;
      for (const g of all) {
        if (g === leader) continue;
        expect(g.cacheHit?.sourceGenerationId).toBe(leader.id);
        expect(["INFLIGHT", "EXACT"]).toContain(g.cacheHit?.kind);
      }
      await rec.until((m) => {
        const e = m.generationsUpdated;
        if (e.generation.status === "SUCCEEDED") done.add(e.generation.id);
        return [...ids].every((id) => done.has(id));
      });
      rec.stop();
      const { attempts } = await one<{ attempts: number }>(
        `SELECT count(*)::int AS attempts FROM attempts WHERE generation_id = ANY($1::uuid[])`,
        [[...ids]],
      );
      expect(attempts).toBe(1);
      const usage = await sql<{ cost_usd: string; cached: boolean }>(
        `SELECT cost_usd, cached FROM usage_records WHERE generation_id = ANY($1::uuid[])`,
        [[...ids]],
      );
      expect(usage).toHaveLength(50);
      expect(usage.filter((u) => !u.cached)).toHaveLength(1);
      expect(usage.filter((u) => Number(u.cost_usd) > 0)).toHaveLength(1);
      const follower = await get(all.find((g) => g.cacheHit?.kind === "INFLIGHT")!.id);
      const source = await get(leader.id);
      expect(follower.status).toBe("SUCCEEDED");
      expect(follower.costUsd).toBe(0);
      expect(follower.outputs.map((o) => new URL(o.url).pathname)).toEqual(
        source.outputs.map((o) => new URL(o.url).pathname),
      );
    });

    it("attached requests fail with the one they wait for", async () => {
      const userId = "inflight-fail";
      const ws = wsClient(server.url, acme.key);
      sockets.push(ws);
      const rec = ws.subscribe(WATCH_USER, { userId });
      const i = { ...input("a storm that fails [sim:fail]"), userId };
      const [a, b] = await Promise.all([generate(i), generate(i, acme.key, apiOnly)]);
      const follower = a!.cached ? a! : b!;
      expect(follower.cacheHit?.kind).toBe("INFLIGHT");
      const failed = new Set<string>();
      await rec.until((m) => {
        if (m.generationsUpdated.generation.status === "FAILED")
          failed.add(m.generationsUpdated.generation.id);
        return failed.has(a!.id) && failed.has(b!.id);
      });
      rec.stop();
      expect((await get(follower.id)).error?.code).toBeTruthy();
    });

    it("attached requests start and progress with the one they wait for", async () => {
      const userId = "inflight-progress";
      const i = { ...input("a slow aurora over the fjord [sim:latency=1500]"), userId };
      const leader = await generate(i);
      const follower = await generate(i, acme.key, apiOnly);
      expect(follower.cacheHit?.kind).toBe("INFLIGHT");
      const ws = wsClient(server.url, acme.key);
      sockets.push(ws);
      const watch = `subscription($id: ID!) {
        generationUpdated(id: $id) { type generation { id status progress } }
      }`;
      const seen = { leader: [] as string[], follower: [] as string[] };
      const recs = (["leader", "follower"] as const).map((who) => {
        const rec = ws.subscribe(watch, { id: who === "leader" ? leader.id : follower.id });
        return rec.until((m) => {
          const e = m.generationUpdated as {
            type: string;
            generation: { status: string; progress: number };
          };
          seen[who].push(`${e.type} ${e.generation.status} ${e.generation.progress.toFixed(2)}`);
          return e.generation.status === "SUCCEEDED";
        });
      });
      await Promise.all(recs);
      // Every progress the running one reported after the follower attached, the follower
      // reported too, as PROCESSING, before its result.
      const progress = (events: string[]) =>
        events.filter((e) => e.startsWith("PROGRESS")).map((e) => e.split(" ")[2]);
      expect(progress(seen.follower).length).toBeGreaterThan(0);
      expect(progress(seen.follower)).toEqual(
        progress(seen.leader).filter((p) => progress(seen.follower).includes(p)),
      );
      for (const e of seen.follower.filter((x) => x.startsWith("PROGRESS")))
        expect(e).toMatch(/^PROGRESS PROCESSING 0\.\d\d$/);
      expect(seen.follower.at(-1)).toBe("SUCCEEDED SUCCEEDED 1.00");
    });

    it("canceling the running one hands the work to an attached request", async () => {
      const userId = "inflight-cancel";
      const ws = wsClient(server.url, acme.key);
      sockets.push(ws);
      const rec = ws.subscribe(WATCH_USER, { userId });
      const i = { ...input("a slow comet [sim:latency=800]"), userId };
      const leader = await generate(i);
      const follower = await generate(i);
      expect(follower.cacheHit?.kind).toBe("INFLIGHT");
      const canceled = await gql(
        server.url,
        `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`,
        { id: leader.id },
        acme.key,
      );
      expect(canceled.errors).toBeUndefined();
      expect(canceled.data!.cancelGeneration.status).toBe("CANCELED");
      await rec.until(
        (m) =>
          m.generationsUpdated.generation.id === follower.id &&
          m.generationsUpdated.generation.status === "SUCCEEDED",
      );
      rec.stop();
      const after = await get(follower.id);
      expect(after.cached).toBe(false);
      expect(after.cacheHit).toBeNull();
      expect(after.costUsd).toBeGreaterThan(0);
    });
  });

  describe("purge", () => {
    it("ADMIN purges one generation's result; the next identical request pays", async () => {
      const src = await paid(input("a brass compass"));
      expect((await generate(input("a brass compass"))).cached).toBe(true);
      const res = await gql(
        server.url,
        `mutation($id: ID) { purgeCache(generationId: $id) { generations exactKeys semanticEntries } }`,
        { id: src.id },
        admin,
      );
      expect(res.data!.purgeCache).toEqual({ generations: 1, exactKeys: 1, semanticEntries: 1 });
      const after = await generate(input("a brass compass"));
      expect(after.cached).toBe(false);
    });

    it("ADMIN purges a model: no result of it is served any more", async () => {
      await paid(input("a copper kettle", { model: "sim-image-standard" }));
      expect(
        (await generate(input("a copper kettle", { model: "sim-image-standard" }))).cached,
      ).toBe(true);
      const res = await gql(
        server.url,
        `mutation { purgeCache(model: "sim-image-standard") { generations semanticEntries } }`,
        {},
        admin,
      );
      expect(res.data!.purgeCache.generations).toBeGreaterThanOrEqual(1);
      expect(
        (await generate(input("a copper kettle", { model: "sim-image-standard" }))).cached,
      ).toBe(false);
      // Other models are untouched.
      expect((await generate(input("a lighthouse at dusk"))).cached).toBe(true);
    });

    it("refuses partners and bad arguments", async () => {
      const partnerTry = await gql(
        server.url,
        `mutation { purgeCache(model: "sim-image-fast") { generations } }`,
        {},
        acme.key,
      );
      expect(errorCode(partnerTry)).toBe("FORBIDDEN");
      for (const [args, field] of [
        ["", "model"],
        [`(generationId: "not-a-uuid")`, "generationId"],
        [`(model: "")`, "model"],
      ] as const) {
        const res = await gql(
          server.url,
          `mutation { purgeCache${args} { generations } }`,
          {},
          admin,
        );
        expect(errorCode(res)).toBe("BAD_USER_INPUT");
        expect(JSON.stringify(res.errors)).toContain(field);
      }
    });
  });

  describe("statistics", () => {
    it("usage reports cache hits, hit rate and savings, by kind", async () => {
      const res = await gql(
        server.url,
        `query($from: DateTime!, $to: DateTime!) {
          usage(from: $from, to: $to, groupBy: [MODEL]) {
            generations cacheHits cacheHitRate savedUsd totalCostUsd
            cacheHitsByKind { kind hits savedUsd }
            rows { model generations cacheHits costUsd savedUsd }
          }
        }`,
        {
          from: new Date(Date.now() - 3600_000).toISOString(),
          to: new Date(Date.now() + 60_000).toISOString(),
        },
        acme.key,
      );
      expect(res.errors).toBeUndefined();
      const u = res.data!.usage;
      const [expected] = await sql<{ n: number; hits: number; saved: string; cost: string }>(
        `SELECT count(*)::int AS n, (count(*) FILTER (WHERE cached))::int AS hits,
                sum(saved_usd) AS saved, sum(cost_usd) AS cost
           FROM usage_records WHERE account_id = $1`,
        [acme.accountId],
      );
      expect(u.generations).toBe(expected!.n);
      expect(u.cacheHits).toBe(expected!.hits);
      expect(u.cacheHitRate).toBeCloseTo(expected!.hits / expected!.n, 6);
      expect(u.savedUsd).toBeCloseTo(Number(expected!.saved), 6);
      expect(u.totalCostUsd).toBeCloseTo(Number(expected!.cost), 6);
      const kinds = Object.fromEntries(
        (u.cacheHitsByKind as Array<{ kind: string; hits: number }>).map((k) => [k.kind, k.hits]),
      );
      expect(kinds.EXACT).toBeGreaterThan(0);
      expect(kinds.SEMANTIC).toBeGreaterThan(0);
      expect(kinds.INFLIGHT).toBeGreaterThan(0);
      expect(
        (u.rows as Array<{ generations: number }>).reduce((s, r) => s + r.generations, 0),
      ).toBe(u.generations);
    });

    it("refuses bad ranges, dimensions and other accounts", async () => {
      const q = `query($from: DateTime!, $to: DateTime!, $g: [UsageDimension!], $a: ID) {
        usage(from: $from, to: $to, groupBy: $g, accountId: $a) { generations } }`;
      const now = Date.now();
      const cases: Array<[Record<string, unknown>, string, string]> = [
        [
          { from: new Date(now).toISOString(), to: new Date(now - 1).toISOString() },
          "BAD_USER_INPUT",
          "to",
        ],
        [
          { from: new Date(now - 400 * 86400_000).toISOString(), to: new Date(now).toISOString() },
          "BAD_USER_INPUT",
          "to",
        ],
        [
          {
            from: new Date(now - 1000).toISOString(),
            to: new Date(now).toISOString(),
            g: ["DAY", "DAY"],
          },
          "BAD_USER_INPUT",
          "groupBy",
        ],
        [
          {
            from: new Date(now - 1000).toISOString(),
            to: new Date(now).toISOString(),
            a: globex.accountId,
          },
          "FORBIDDEN",
          "",
        ],
        [{ from: "yesterday", to: new Date(now).toISOString() }, "BAD_USER_INPUT", "from"],
      ];
      for (const [vars, code, field] of cases) {
        const res = await gql(server.url, q, vars, acme.key);
        expect(errorCode(res)).toBe(code);
        expect(JSON.stringify(res.errors)).toContain(field);
      }
    });

    it("metrics count lookups and hits by kind", async () => {
      const res = await fetch(`${server.url}/metrics`);
      expect(res.status).toBe(200);
      const metrics = parsePrometheusText(await res.text());
      const value = (kind: string, result: string) =>
        valueOf(metrics, "gengate_cache_lookups_total", { kind, result }) ?? 0;
      expect(value("EXACT", "hit")).toBeGreaterThan(0);
      expect(value("EXACT", "miss")).toBeGreaterThan(0);
      expect(value("SEMANTIC", "hit")).toBeGreaterThan(0);
      expect(value("SEMANTIC", "miss")).toBeGreaterThan(0);
    });
  });

  it("refuses an unknown cache mode", async () => {
    const res = await gql(
      server.url,
      GENERATE,
      { input: input("x", { cache: "SOMETIMES" }) },
      acme.key,
    );
    expect(errorCode(res)).toBe("BAD_USER_INPUT");
  });
});
