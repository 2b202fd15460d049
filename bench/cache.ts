/**
 * The cache under a replay of realistic traffic: hit rate by kind, wrong hits on labelled
 * pairs and across models and sizes, and hit latency (server-side and over HTTP).
 *
 *   npm run bench -- --only=cache
 *
 * The worker is a `gengate worker` process of its own. The api runs twice: in this process
 * (api role only), so that "server-side" is the time of `GenerationService.generate` itself,
 * what a request costs once GraphQL has parsed it; and as a `gengate api` process, for the
 * figures over HTTP (GraphQL, express and the client added). Postgres + Redis, the simulated
 * provider answering at once.
 */
import type { Viewer } from "../src/auth/viewer";
import { createApp, type App } from "../src/app/app";
import { createLogger } from "../src/common/logger";
import { loadConfig } from "../src/config";
import type { GenerationSnapshot } from "../src/generation/generation.events";
import { CACHE_PROMPTS, replaySequence, type ReplayRequest } from "./data/cache-prompts";
import { adminKey, gql } from "./lib/graphql";
import { withInfra } from "./lib/infra";
import { startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { Measure, Scenario } from "./lib/scenario";
import { pool } from "./lib/stats";

const REQUESTS = Number(process.env.BENCH_CACHE_REQUESTS ?? 600);

type Outcome = "MISS" | "EXACT" | "SEMANTIC" | "INFLIGHT";

const MODEL = { IMAGE: "sim-image-fast", VIDEO: "sim-video", AUDIO: "sim-audio" } as const;
const OTHER_MODEL = { IMAGE: "sim-image-standard", VIDEO: null, AUDIO: null } as const;

export const cacheScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const env = infra.env;
    await adminKey(env); // migrates the fresh database before three processes open it
    const [worker, api] = await Promise.all([
      startGengate(ctx, "worker", env),
      startGengate(ctx, "api", env),
    ]);
    try {
      ctx.log(`replay of ${REQUESTS} requests, labelled pairs, hit latency`);
      return await measure(env, api, REQUESTS);
    } finally {
      await Promise.all([stopGengate(api), stopGengate(worker)]);
    }
  });

async function measure(
  env: Record<string, string>,
  api: GengateProcess,
  requests: number,
): Promise<Awaited<ReturnType<Scenario>>> {
  const config = loadConfig(env);
  const app = await createApp(config, { api: true, worker: false }, createLogger("warn"));
  const url = api.url!;
  const rows: Measure[] = [];
  try {
    const { key } = await app.services.auth.createAccount(
      { role: "ADMIN", accountId: "", canGenerate: true },
      "bench",
    );
    const viewer: Viewer = (await app.services.auth.authenticate(`Bearer ${key}`))!;
    const generate = (input: Record<string, unknown>) =>
      app.services.generations.generate(viewer, {
        userId: "bench",
        mediaType: "IMAGE",
        prompt: "",
        ...input,
      } as Parameters<App["services"]["generations"]["generate"]>[1]);

    // 1. Replay: requests in order, each paid request finished before the next, so what can
    // hit does (a real client population is slower than a zero-latency provider).
    const replay = replaySequence({ seed: 7, requests });
    const groupOf = new Map<string, string>();
    const counts: Record<Outcome, number> = { MISS: 0, EXACT: 0, SEMANTIC: 0, INFLIGHT: 0 };
    let wrong = 0;
    const wrongExamples: string[] = [];
    for (const r of replay) {
      const g = await generate(inputFor(r));
      const outcome = outcomeOf(g);
      counts[outcome]++;
      if (outcome === "MISS") {
        groupOf.set(g.id, r.group);
        await finished(app, viewer, g.id);
      } else if (groupOf.get(g.cacheHit!.sourceGenerationId) !== r.group) {
        wrong++;
        if (wrongExamples.length < 5)
          wrongExamples.push(`"${r.text}" ← "${g.cacheHit!.originalPrompt}"`);
      }
    }
    const hits = counts.EXACT + counts.SEMANTIC + counts.INFLIGHT;
    const pct = (n: number, of: number) => `${of ? ((100 * n) / of).toFixed(1) : "0.0"}%`;
    rows.push(
      {
        measure: `replay, ${replay.length} requests over ${CACHE_PROMPTS.length} prompts, Zipf 1.1 popularity`,
        result: `${pct(hits, replay.length)} hits: exact ${pct(counts.EXACT, replay.length)}, semantic ${pct(counts.SEMANTIC, replay.length)}, in flight ${pct(counts.INFLIGHT, replay.length)}`,
      },
      {
        measure: "wrong hits in the replay (answer from another prompt group)",
        result: `${wrong} of ${hits}${wrongExamples.length ? `: ${wrongExamples.join("; ")}` : ""}`,
        goal: "0",
      },
    );

    // 2. Labelled pairs, each in a scope of its own (its own size): the base paid, then the
    // variant asked. A near-duplicate answered from the cache is a false hit.
    // Independent of each other (a scope each), so eight are under way at a time.
    const byKind = new Map<string, { pairs: number; hits: number }>();
    const pairs = CACHE_PROMPTS.flatMap((p) => p.variants.map((v) => ({ p, v })));
    await pool(pairs.length, 8, async (i) => {
      const { p, v } = pairs[i]!;
      const size = sizeFor(p.mediaType, i);
      const base = await generate({ ...inputFor(p), ...size });
      if (outcomeOf(base) === "MISS") await finished(app, viewer, base.id);
      const g = await generate({ ...inputFor({ ...p, text: v.text }), ...size });
      const k = byKind.get(v.kind) ?? { pairs: 0, hits: 0 };
      k.pairs++;
      if (outcomeOf(g) !== "MISS" && g.cacheHit!.sourceGenerationId === base.id) k.hits++;
      byKind.set(v.kind, k);
    });
    const falseHits = byKind.get("near-duplicate")?.hits ?? 0;
    rows.push({
      measure: "labelled pairs (near-duplicate hits are false hits)",
      result: [...byKind].map(([kind, k]) => `${kind} ${k.hits}/${k.pairs} hit`).join(", "),
      goal: "0 near-duplicate hits",
    });

    // 3. Never across models or sizes: every base prompt again, with another model or size.
    let crossed = 0;
    let tried = 0;
    for (const p of CACHE_PROMPTS) {
      const other = OTHER_MODEL[p.mediaType];
      const variants: Array<Record<string, unknown>> = [];
      if (other) variants.push({ model: other });
      if (p.mediaType !== "AUDIO") variants.push({ width: 1016, height: 1016 });
      for (const change of variants) {
        tried++;
        const g = await generate({ ...inputFor(p), ...change });
        if (outcomeOf(g) !== "MISS") crossed++;
      }
    }
    rows.push({
      measure: "same prompts with another model or size",
      result: `${crossed} hits of ${tried}`,
      goal: "0",
    });

    // 4. Latency of hits: server-side (the service call) and over HTTP, one client.
    const exactInputs: Array<Record<string, unknown>> = [];
    for (const p of CACHE_PROMPTS) {
      const input = inputFor(p);
      const first = await generate(input);
      if (outcomeOf(first) === "MISS") await finished(app, viewer, first.id);
      if (outcomeOf(await generate(input)) === "EXACT") exactInputs.push(input);
    }
    const semanticInputs: Array<Record<string, unknown>> = [];
    for (const p of CACHE_PROMPTS) {
      for (const v of p.variants.filter((x) => x.kind === "paraphrase")) {
        const input = inputFor({ ...p, text: v.text });
        if (outcomeOf(await generate(input)) === "SEMANTIC") semanticInputs.push(input);
      }
    }
    const n = 500;
    const exactServer = await timed(
      n,
      (i) => generate(exactInputs[i % exactInputs.length]!),
      "EXACT",
    );
    const semanticServer = await timed(
      n,
      (i) => generate(semanticInputs[i % semanticInputs.length]!),
      "SEMANTIC",
    );
    const missServer = await timed(
      200,
      (i) => generate({ ...inputFor(CACHE_PROMPTS[0]!), prompt: `a fresh prompt number ${i}` }),
      "MISS",
    );
    const overHttp = (input: Record<string, unknown>) =>
      gql(
        url,
        key,
        `mutation($input: GenerateInput!) { generate(input: $input) { id cached cacheHit { kind } } }`,
        { input: { userId: "bench", ...input } },
      );
    const exactHttp = await timedPlain(n, (i) => overHttp(exactInputs[i % exactInputs.length]!));
    const semanticHttp = await timedPlain(n, (i) =>
      overHttp(semanticInputs[i % semanticInputs.length]!),
    );
    rows.push(
      {
        measure: `exact hit, server-side (${n} requests)`,
        result: `p50 ${exactServer.p50} ms, p99 ${exactServer.p99} ms`,
        goal: "p99 < 5 ms",
      },
      {
        measure: `semantic hit, server-side (${n} requests over ${semanticInputs.length} paraphrases)`,
        result: `p50 ${semanticServer.p50} ms, p99 ${semanticServer.p99} ms`,
        goal: "p99 < 20 ms",
      },
      {
        measure: "miss (queued), server-side (200 requests)",
        result: `p50 ${missServer.p50} ms, p99 ${missServer.p99} ms`,
      },
      {
        measure: "exact hit over HTTP / semantic hit over HTTP (`gengate api`)",
        result: `p50 ${exactHttp.p50} / ${semanticHttp.p50} ms, p99 ${exactHttp.p99} / ${semanticHttp.p99} ms`,
      },
    );
    // 5. In flight: 50 identical requests at once while the provider takes half a second.
    const burst = await Promise.all(
      Array.from({ length: 50 }, () =>
        generate({
          ...inputFor(CACHE_PROMPTS[0]!),
          prompt: "a burst of identical requests [sim:latency=500]",
        }),
      ),
    );
    for (const g of burst) if (outcomeOf(g) === "MISS") await finished(app, viewer, g.id);
    const [{ paid }] = (await app.db.dataSource.query(
      `SELECT count(*)::int AS paid FROM attempts WHERE generation_id = ANY($1::uuid[])`,
      [burst.map((g) => g.id)],
    )) as [{ paid: number }];
    const attached = burst.filter((g) => outcomeOf(g) === "INFLIGHT").length;
    rows.push({
      measure: "in flight: 50 identical concurrent requests, 500 ms provider",
      result: `${attached} attached, provider paid ${paid} time(s)`,
      goal: "paid once",
    });
    const [{ n: entries }] = (await app.db.dataSource.query(
      `SELECT count(*)::int AS n FROM semantic_cache_entries`,
    )) as [{ n: number }];
    const met =
      wrong === 0 &&
      falseHits === 0 &&
      crossed === 0 &&
      exactServer.p99 < 5 &&
      semanticServer.p99 < 20 &&
      paid === 1;
    return {
      title: "Cache: hit rate on realistic traffic, wrong hits, hit latency",
      setup: `
A \`gengate worker\` process and a \`gengate api\` process on Postgres + Redis (pgvector, the local
lexical embedder, threshold 0.85), the simulated provider answering at once. "Server-side" is
the time of \`GenerationService.generate\` in an api built in the bench process (api role only,
the same configuration): what a request costs once GraphQL has parsed it. "Over HTTP" is the
\`gengate api\` process, one request at a time, GraphQL, express and the client added. The prompt
set is \`bench/data/cache-prompts.ts\`: ${CACHE_PROMPTS.length} base prompts with labelled exact
repeats, paraphrases, synonyms and near-duplicates. The replay waits for each paid generation
before the next request, so what can hit does.`,
      rows,
      notes: [
        `Semantic cache entries at the end: ${entries}.`,
        "The exact hit is a Redis GET, the Redis rate-limit script and one Postgres statement (source check, generation row and usage row together, committed without waiting for the WAL flush).",
        "Synonyms never hit: the lexical embedder compares words, not meanings; an OpenAI-compatible embedding model (`EMBEDDINGS_URL`) is the answer where that matters.",
      ],
      headline: `exact hit p50 ${exactServer.p50} ms, p99 ${exactServer.p99} ms; semantic p99 ${semanticServer.p99} ms (server-side; over HTTP p99 ${exactHttp.p99} / ${semanticHttp.p99} ms); ${pct(hits, replay.length)} hits on the replay, ${wrong + falseHits + crossed} wrong`,
      goal: "exact p99 < 5 ms, semantic p99 < 20 ms, 0 wrong hits",
      met,
    };
  } finally {
    await app.stop();
  }

  async function timed(
    count: number,
    task: (i: number) => Promise<GenerationSnapshot>,
    expected: Outcome,
  ): Promise<{ p50: number; p99: number }> {
    const samples: number[] = [];
    for (let i = 0; i < count; i++) {
      const t = performance.now();
      const g = await task(i);
      samples.push(performance.now() - t);
      if (outcomeOf(g) !== expected) throw new Error(`expected ${expected}, got ${outcomeOf(g)}`);
    }
    return percentiles(samples);
  }
}

async function timedPlain(
  count: number,
  task: (i: number) => Promise<unknown>,
): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = performance.now();
    await task(i);
    samples.push(performance.now() - t);
  }
  return percentiles(samples);
}

function percentiles(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]! * 100) / 100;
  return { p50: at(0.5), p99: at(0.99) };
}

function inputFor(r: Pick<ReplayRequest, "mediaType"> & { text?: string; prompt?: string }) {
  const size = r.mediaType === "AUDIO" ? {} : { width: 512, height: 512 };
  return {
    mediaType: r.mediaType,
    model: MODEL[r.mediaType],
    prompt: r.text ?? r.prompt!,
    ...size,
  };
}

/** A size no other pair uses, so that each pair is alone in its semantic scope. */
function sizeFor(mediaType: string, i: number): Record<string, number> {
  if (mediaType === "AUDIO") return { durationSeconds: 1 + (i % 5000) * 0.01 };
  return { width: 64 + 8 * (i % 110), height: 64 + 8 * Math.floor(i / 110) };
}

function outcomeOf(g: GenerationSnapshot): Outcome {
  return g.cacheHit ? g.cacheHit.kind : "MISS";
}

async function finished(app: App, viewer: Viewer, id: string): Promise<void> {
  // A bench may poll: the simulated provider answers at once, so this is a few milliseconds.
  // The worker stores the cache entries just after the SUCCEEDED commit (and before the
  // event): wait for them too, so a pair measures matching, not that window.
  for (;;) {
    const g = await app.services.generations.get(viewer, id);
    if (g && ["FAILED", "CANCELED"].includes(g.status)) return;
    if (g?.status === "SUCCEEDED") {
      const rows = (await app.db.dataSource.query(
        `SELECT 1 FROM semantic_cache_entries WHERE generation_id = $1`,
        [id],
      )) as unknown[];
      if (rows.length > 0) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
