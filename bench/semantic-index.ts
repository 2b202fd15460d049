/**
 * The semantic cache's HNSW index: what its build parameters cost and what they find. For each
 * parameter set, on the same entries and queries: the index's build time and size, the cost of
 * one entry's INSERT with the index present, the lookup's latency, and how often the index's
 * answer is the exact nearest entry (recall@1) and gives the same hit-or-miss decision at the
 * cache's threshold.
 *
 *   npm run bench -- --only=semantic-index     # BENCH_SEMANTIC_ENTRIES=5000 for a quick run
 *
 * Not part of the full run: it measures a setting, not a goal.
 *
 * The data: BENCH_SEMANTIC_ENTRIES entries (default 20,000) embedded by the default embedder
 * (lexical, 384 dimensions), over 12 accounts and 8 scopes (models and sizes; one popular
 * image scope holds about a third), stored through real generations rows. Each prompt is a
 * prompt of `data/cache-prompts.ts` or one of its variants, drawn by a Zipf-like popularity,
 * with up to four style, light, framing or quality phrases (seeded, so every run loads the
 * same rows). The queries (BENCH_SEMANTIC_QUERIES, default 600), each in the scope of what it
 * derives from: a paraphrase of a stored prompt (its other wording, its phrases reordered),
 * a near-duplicate (its prompt changed in colour, subject, count... with the same phrases),
 * and prompts of subjects never stored (held-out prompts).
 *
 * The exact answer is the same statement as the repository's `nearest` ordered by the un-cast
 * column, which no HNSW index serves: the scope index and a sort of the whole scope.
 */
import "reflect-metadata";
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { semanticScopeKey } from "../src/cache/cache-key";
import { LexicalEmbedder } from "../src/cache/lexical.embedder";
import { SemanticCacheRepository } from "../src/cache/semantic-cache.repository";
import { loadConfig } from "../src/config";
import type { MediaType } from "../src/entities/generation.entity";
import { openDatabase } from "../src/infra/data-source";
import { migrate } from "../src/infra/migrate";
import { CACHE_PROMPTS, cumulative, mulberry32, type CachePrompt } from "./data/cache-prompts";
import { withInfra } from "./lib/infra";
import type { Measure, Scenario } from "./lib/scenario";
import { ms, pct, ratio, summarize, type Summary } from "./lib/stats";

interface IndexParams {
  m: number;
  efConstruction: number;
  /** The `hnsw.ef_search` values its lookups are measured at. */
  efSearch: number[];
}

/** pgvector's defaults first: every other set is compared with them; the candidate last. */
const PARAMS: IndexParams[] = [
  { m: 16, efConstruction: 64, efSearch: [40, 80] },
  { m: 12, efConstruction: 48, efSearch: [40] },
  { m: 8, efConstruction: 32, efSearch: [20, 40, 60, 80] },
];
/** pgvector's default `hnsw.ef_search`, which gengate does not change. */
const DEFAULT_EF_SEARCH = 40;

const ACCOUNTS = 12;
const INDEX = "semantic_cache_hnsw_lexical_v1_384";
/** Every fourth prompt of a media type is never stored: the queries about them are new. */
const HELD_OUT_EVERY = 4;

interface Scope {
  model: string;
  mediaType: MediaType;
  negativePrompt: string | null;
  width?: number;
  height?: number;
  durationSeconds?: number;
  weight: number;
}

const SCOPES: Scope[] = [
  {
    model: "flux-dev",
    mediaType: "IMAGE",
    negativePrompt: null,
    width: 1024,
    height: 1024,
    weight: 34,
  },
  {
    model: "flux-schnell",
    mediaType: "IMAGE",
    negativePrompt: null,
    width: 1024,
    height: 1024,
    weight: 20,
  },
  {
    model: "sdxl",
    mediaType: "IMAGE",
    negativePrompt: "blurry, lowres",
    width: 1024,
    height: 1024,
    weight: 14,
  },
  {
    model: "flux-dev",
    mediaType: "IMAGE",
    negativePrompt: null,
    width: 768,
    height: 1344,
    weight: 10,
  },
  {
    model: "sim-image-fast",
    mediaType: "IMAGE",
    negativePrompt: null,
    width: 512,
    height: 512,
    weight: 8,
  },
  { model: "sdxl", mediaType: "IMAGE", negativePrompt: null, width: 1344, height: 768, weight: 6 },
  { model: "kling-video", mediaType: "VIDEO", negativePrompt: null, durationSeconds: 5, weight: 5 },
  { model: "sim-audio", mediaType: "AUDIO", negativePrompt: null, durationSeconds: 10, weight: 3 },
];

const PHRASES: Record<MediaType, string[]> = {
  IMAGE: [
    "oil painting",
    "watercolor",
    "digital art",
    "pencil sketch",
    "35mm photo",
    "anime style",
    "pixel art",
    "low poly 3d render",
    "cinematic still",
    "isometric illustration",
    "charcoal drawing",
    "vaporwave",
    "art nouveau poster",
    "claymation",
    "ukiyo-e woodblock print",
    "flat vector illustration",
    "long exposure photograph",
    "polaroid photo",
    "concept art",
    "golden hour",
    "soft morning light",
    "neon lighting",
    "dramatic rim light",
    "overcast sky",
    "candlelight",
    "moonlight",
    "volumetric fog",
    "harsh midday sun",
    "backlit",
    "studio lighting",
    "wide angle",
    "close-up",
    "aerial view",
    "macro shot",
    "low angle",
    "bokeh background",
    "tilt-shift",
    "fisheye lens",
    "symmetrical composition",
    "highly detailed",
    "4k",
    "8k",
    "masterpiece",
    "trending on artstation",
    "sharp focus",
    "muted colors",
    "pastel palette",
  ],
  VIDEO: [
    "slow motion",
    "drone shot",
    "timelapse",
    "handheld camera",
    "tracking shot",
    "dolly zoom",
    "golden hour",
    "neon lighting",
    "overcast",
    "4k",
    "cinematic",
    "film grain",
    "24 fps",
    "wide angle",
    "close-up",
    "loop",
  ],
  AUDIO: [
    "lo-fi",
    "with reverb",
    "stereo",
    "120 bpm",
    "ambient",
    "field recording",
    "loopable",
    "cinematic",
    "acoustic",
    "synthwave",
    "orchestral",
    "30 seconds",
    "soft",
    "warm analog",
  ],
};

interface Prompt {
  /** Index in CACHE_PROMPTS. */
  base: number;
  core: string;
  phrases: string[];
  scope: number;
}

interface Query {
  kind: "paraphrase" | "near-duplicate" | "unrelated";
  text: string;
  scopeKey: string;
  accountId: string;
  embedding: number[];
}

interface Answer {
  similarity: number | null;
}

interface Measured {
  params: IndexParams;
  efSearch: number;
  lookup: Timing;
  recall: number;
  agree: number;
  /** recall@1 by kind of query, and among the queries whose exact answer is a hit. */
  recallOf: Record<Query["kind"], number>;
  hitRecall: number;
  hnswPlans: number;
}

export const semanticIndexScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const entries = Number(process.env.BENCH_SEMANTIC_ENTRIES ?? 20_000);
    const queryCount = Number(process.env.BENCH_SEMANTIC_QUERIES ?? 1500);
    const insertCount = Number(process.env.BENCH_SEMANTIC_INSERTS ?? 300);
    const rounds = Number(process.env.BENCH_SEMANTIC_ROUNDS ?? 2);
    const threshold = loadConfig(infra.env).SEMANTIC_CACHE_THRESHOLD;
    const embedder = new LexicalEmbedder();
    const random = mulberry32(20261128);

    // One connection: `SET hnsw.ef_search` and the statements measured share it, and nothing
    // else of the run competes with them.
    const db = await openDatabase({ url: infra.databaseUrl, dataDir: "", poolSize: 1 });
    try {
      await migrate(db.dataSource);
      const q = (text: string, params: unknown[] = []) =>
        db.dataSource.query(text, params) as Promise<Array<Record<string, unknown>>>;
      const repo = new SemanticCacheRepository(db.dataSource);
      // Loaded without the index, which each parameter set then builds.
      await q(`DROP INDEX IF EXISTS ${INDEX}`);

      const accountIds: string[] = [];
      const endUserIds: string[] = [];
      for (let a = 0; a < ACCOUNTS; a++) {
        const [row] = await q(
          `WITH a AS (INSERT INTO accounts (name) VALUES ($1) RETURNING id)
           INSERT INTO end_users (account_id, user_id) SELECT id, 'u' FROM a
           RETURNING id, account_id`,
          [`bench ${a}`],
        );
        accountIds.push(String(row!.account_id));
        endUserIds.push(String(row!.id));
      }
      const scopeKeys = SCOPES.map((s) => semanticScopeKey(s));
      const pickScope = cumulative(
        SCOPES.map((_, i) => i),
        SCOPES.map((s) => s.weight),
      );
      const pickAccount = cumulative(
        accountIds.map((_, i) => i),
        accountIds.map((_, i) => 1 / (i + 1)),
      );
      const byMedia = (media: MediaType, heldOut: boolean) =>
        CACHE_PROMPTS.map((p, i) => [p, i] as const)
          .filter(([p]) => p.mediaType === media)
          .filter((_, k) => (k % HELD_OUT_EVERY === HELD_OUT_EVERY - 1) === heldOut)
          .map(([, i]) => i);
      const pickBase = (media: MediaType, heldOut: boolean) => {
        const ids = byMedia(media, heldOut);
        return cumulative(
          ids,
          ids.map((_, r) => 1 / Math.pow(r + 1, 0.8)),
        );
      };
      const stored = new Map(
        (["IMAGE", "VIDEO", "AUDIO"] as const).map((m) => [m, pickBase(m, false)]),
      );
      const fresh = new Map(
        (["IMAGE", "VIDEO", "AUDIO"] as const).map((m) => [m, pickBase(m, true)]),
      );

      const texts = (p: CachePrompt) => [p.prompt, ...p.variants.map((v) => v.text)];
      const phrasesFor = (media: MediaType) => {
        const pool = [...PHRASES[media]];
        const n = Math.floor(random() * 5);
        const out: string[] = [];
        for (let k = 0; k < n && pool.length; k++) {
          out.push(pool.splice(Math.floor(random() * pool.length), 1)[0]!);
        }
        return out;
      };
      const textOf = (p: Prompt) => [p.core, ...p.phrases].join(", ");
      const newPrompt = (heldOut: boolean): Prompt => {
        const scope = pickScope(random());
        const media = SCOPES[scope]!.mediaType;
        const base = (heldOut ? fresh : stored).get(media)!(random());
        const choices = texts(CACHE_PROMPTS[base]!);
        // Mostly the prompt as written, sometimes one of its variants.
        const core =
          random() < 0.6 ? choices[0]! : choices[1 + Math.floor(random() * (choices.length - 1))]!;
        return { base, core, phrases: phrasesFor(media), scope };
      };

      // Entries: distinct texts per scope, as paid generations are (a repeat is an exact hit).
      const loadStarted = performance.now();
      const prompts: Prompt[] = [];
      const seen = new Set<string>();
      while (prompts.length < entries) {
        const p = newPrompt(false);
        const key = `${p.scope}|${textOf(p).toLowerCase()}`;
        if (seen.has(key)) continue;
        seen.add(key);
        prompts.push(p);
      }
      const owners = prompts.map(() => pickAccount(random()));
      for (let first = 0; first < prompts.length; first += 500) {
        const batch = prompts.slice(first, first + 500);
        const accounts = owners.slice(first, first + 500);
        const ids = batch.map(() => randomUUID());
        await insertGenerations(
          q,
          ids,
          accounts.map((a) => accountIds[a]!),
          accounts.map((a) => endUserIds[a]!),
          batch.map(textOf),
          batch.map((p) => SCOPES[p.scope]!),
        );
        await q(
          `INSERT INTO semantic_cache_entries
                  (generation_id, account_id, embedder, scope_key, model, prompt, embedding, expires_at)
           SELECT g, a, $3, s, m, p, e::vector, now() + interval '1 day'
             FROM unnest($1::uuid[], $2::uuid[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS t(g, a, s, m, p, e)`,
          [
            ids,
            accounts.map((a) => accountIds[a]!),
            embedder.id,
            batch.map((p) => scopeKeys[p.scope]!),
            batch.map((p) => SCOPES[p.scope]!.model),
            batch.map(textOf),
            batch.map((p) => toVector(embedder.embedText(textOf(p)))),
          ],
        );
      }
      await q(`VACUUM ANALYZE semantic_cache_entries`);
      const [sizes] = await q(
        `SELECT sum(c)::int AS n, max(c)::int AS largest
           FROM (SELECT count(*) AS c FROM semantic_cache_entries GROUP BY scope_key) s`,
      );
      const loadSeconds = (performance.now() - loadStarted) / 1000;
      ctx.log(`loaded ${prompts.length} entries in ${loadSeconds.toFixed(1)} s`);

      // Queries, in the scope of the entry they derive from (a held-out one: any scope).
      const queries: Query[] = [];
      for (let i = 0; i < queryCount; i++) {
        const r = random();
        const accountId = accountIds[pickAccount(random())]!;
        let kind: Query["kind"];
        let text: string;
        let scope: number;
        if (r < 0.7) {
          const source = prompts[Math.floor(random() * prompts.length)]!;
          const variants = CACHE_PROMPTS[source.base]!.variants;
          const wanted = r < 0.4 ? ["exact", "paraphrase"] : ["near-duplicate"];
          const choices = variants.filter((v) => wanted.includes(v.kind));
          if (choices.length === 0) {
            i--;
            continue;
          }
          kind = r < 0.4 ? "paraphrase" : "near-duplicate";
          const core = choices[Math.floor(random() * choices.length)]!.text;
          text = [core, ...shuffle(source.phrases, random)].join(", ");
          scope = source.scope;
        } else {
          const p = newPrompt(true);
          kind = "unrelated";
          text = textOf(p);
          scope = p.scope;
        }
        queries.push({
          kind,
          text,
          scopeKey: scopeKeys[scope]!,
          accountId,
          embedding: embedder.embedText(text),
        });
      }
      const nearestOf = (query: Query) =>
        repo.nearest({
          accountId: query.accountId,
          embedder: embedder.id,
          scopeKey: query.scopeKey,
          embedding: query.embedding,
        });

      // The exact answers, and what a lookup costs with no HNSW index at all.
      const exact: Answer[] = [];
      for (const query of queries)
        exact.push({ similarity: await exactNearest(q, embedder.id, query) });
      const scanned = await timeLookups(q, queries, nearestOf);
      const insertPrompts = () =>
        Array.from({ length: insertCount }, () => {
          let p: Prompt;
          do p = newPrompt(false);
          while (seen.has(`${p.scope}|${textOf(p).toLowerCase()}`));
          seen.add(`${p.scope}|${textOf(p).toLowerCase()}`);
          return p;
        });
      const timeInserts = async (): Promise<Timing> => {
        const batch = insertPrompts();
        const ids = batch.map(() => randomUUID());
        const accounts = batch.map(() => pickAccount(random()));
        await insertGenerations(
          q,
          ids,
          accounts.map((a) => accountIds[a]!),
          accounts.map((a) => endUserIds[a]!),
          batch.map(textOf),
          batch.map((p) => SCOPES[p.scope]!),
        );
        const samples: number[] = [];
        const cpu = await backendCpu(q);
        for (let i = 0; i < batch.length; i++) {
          const p = batch[i]!;
          const embedding = embedder.embedText(textOf(p));
          const t = performance.now();
          await repo.insert({
            generationId: ids[i]!,
            accountId: accountIds[accounts[i]!]!,
            embedder: embedder.id,
            scopeKey: scopeKeys[p.scope]!,
            model: SCOPES[p.scope]!.model,
            prompt: textOf(p),
            embedding,
            expiresAt: new Date(Date.now() + 86_400_000),
          });
          samples.push(performance.now() - t);
        }
        const cpuMs = (await cpu()) / batch.length;
        // Back to the loaded rows, for the next parameter set.
        await q(`DELETE FROM semantic_cache_entries WHERE generation_id = ANY($1::uuid[])`, [ids]);
        return { ...summarize(samples), cpuMs };
      };
      ctx.log(
        `no HNSW index: lookup p50 ${ms(scanned.summary.p50)} p99 ${ms(scanned.summary.p99)}, CPU ${ms(scanned.summary.cpuMs)}`,
      );

      const measured: Measured[] = [];
      const isHit = (s: number | null) => s !== null && s >= threshold;
      const judge = (answers: Answer[]) => {
        let recall = 0;
        let agree = 0;
        const recallOf = { paraphrase: 0, "near-duplicate": 0, unrelated: 0 };
        let hitRecall = 0;
        answers.forEach((a, i) => {
          const e = exact[i]!.similarity;
          // Ties count: another entry at the same distance is as near.
          const found =
            e === null ? a.similarity === null : a.similarity !== null && a.similarity >= e - 1e-9;
          if (found) {
            recall++;
            recallOf[queries[i]!.kind]++;
            if (isHit(e)) hitRecall++;
          }
          if (isHit(a.similarity) === isHit(e)) agree++;
        });
        return { recall, agree, recallOf, hitRecall };
      };
      // Builds and inserts twice over, in turn, so that a neighbour's burst does not land on one
      // parameter set only; lookups once, on the first build.
      const costs = PARAMS.map(() => ({ builds: [] as number[], inserts: [] as Timing[] }));
      const bytes = PARAMS.map(() => 0);
      const unindexed: Timing[] = [];
      for (let round = 0; round < rounds; round++) {
        await q(`DROP INDEX IF EXISTS ${INDEX}`);
        await q(`VACUUM semantic_cache_entries`);
        unindexed.push(await timeInserts());
        ctx.log(
          `no HNSW index, round ${round + 1}: insert p50 ${ms(unindexed[round]!.p50)}, CPU ${ms(unindexed[round]!.cpuMs)}`,
        );
        for (const [k, params] of PARAMS.entries()) {
          await q(`DROP INDEX IF EXISTS ${INDEX}`);
          await q(`VACUUM semantic_cache_entries`);
          const t = performance.now();
          await q(
            `CREATE INDEX ${INDEX} ON semantic_cache_entries
               USING hnsw ((embedding::vector(384)) vector_cosine_ops)
               WITH (m = ${params.m}, ef_construction = ${params.efConstruction})
               WHERE embedder = '${embedder.id}'`,
          );
          costs[k]!.builds.push(performance.now() - t);
          if (round === 0) {
            const [size] = await q(`SELECT pg_relation_size('${INDEX}')::float8 AS bytes`);
            bytes[k] = Number(size!.bytes);
            const hnswPlans = await countHnswPlans(q, embedder.id, queries);
            for (const efSearch of params.efSearch) {
              await q(`SET hnsw.ef_search = ${efSearch}`);
              const run = await timeLookups(q, queries, nearestOf);
              const m = { params, efSearch, lookup: run.summary, hnswPlans, ...judge(run.answers) };
              measured.push(m);
              ctx.log(
                `${label(params)}, ef_search = ${efSearch}: lookup p50 ${ms(m.lookup.p50)}, CPU ${ms(m.lookup.cpuMs)}, recall@1 ${pct(m.recall, queries.length)} (exact hits found ${m.hitRecall}), decisions agree ${pct(m.agree, queries.length)}`,
              );
            }
            await q(`SET hnsw.ef_search = ${DEFAULT_EF_SEARCH}`);
          }
          costs[k]!.inserts.push(await timeInserts());
          ctx.log(
            `${label(params)}, round ${round + 1}: build ${(costs[k]!.builds[round]! / 1000).toFixed(1)} s, insert p50 ${ms(costs[k]!.inserts[round]!.p50)}, CPU ${ms(costs[k]!.inserts[round]!.cpuMs)}`,
          );
        }
      }

      const byKind = (kind: Query["kind"]) => queries.filter((x) => x.kind === kind).length;
      const hits = exact.filter((e) => e.similarity !== null && e.similarity >= threshold).length;
      const rows: Measure[] = [
        {
          measure: "entries, scopes",
          result: `${Number(sizes!.n).toLocaleString("en-US")} entries (largest scope ${Number(sizes!.largest).toLocaleString("en-US")}), ${SCOPES.length} scopes, ${ACCOUNTS} accounts; loaded in ${loadSeconds.toFixed(1)} s`,
        },
        {
          measure: "queries",
          result: `${queries.length}: ${byKind("paraphrase")} paraphrases, ${byKind("near-duplicate")} near-duplicates, ${byKind("unrelated")} unrelated; ${hits} hits at the threshold ${threshold} by the exact answer`,
        },
        {
          measure: "no HNSW index (scope index and sort)",
          result: `insert CPU ${unindexed.map((i) => ms(i.cpuMs)).join(" / ")}, p50 ${unindexed.map((i) => ms(i.p50)).join(" / ")}; lookup CPU ${ms(scanned.summary.cpuMs)}, p50 ${ms(scanned.summary.p50)}, p99 ${ms(scanned.summary.p99)}`,
        },
        ...PARAMS.map((params, k) => ({
          measure: `${label(params)}: build, insert`,
          result:
            `build ${costs[k]!.builds.map((b) => (b / 1000).toFixed(1)).join(" / ")} s, ${(bytes[k]! / 1024 / 1024).toFixed(1)} MB; ` +
            `insert CPU ${costs[k]!.inserts.map((i) => ms(i.cpuMs)).join(" / ")}, p50 ${costs[k]!.inserts.map((i) => ms(i.p50)).join(" / ")} (p90 ${costs[k]!.inserts.map((i) => ms(i.p90)).join(" / ")})`,
        })),
        ...measured.map((m) => ({
          measure: `${label(m.params)}, ef_search = ${m.efSearch}`,
          result: [
            `lookup CPU ${ms(m.lookup.cpuMs)}, p50 ${ms(m.lookup.p50)}, p99 ${ms(m.lookup.p99)}`,
            `recall@1 ${pct(m.recall, queries.length)} (${m.recall}/${queries.length}: paraphrases ${m.recallOf.paraphrase}/${byKind("paraphrase")}, near-duplicates ${m.recallOf["near-duplicate"]}/${byKind("near-duplicate")}, unrelated ${m.recallOf.unrelated}/${byKind("unrelated")}; exact hits ${m.hitRecall}/${hits})`,
            `decisions agree ${pct(m.agree, queries.length)} (${m.agree}/${queries.length})`,
            `${m.hnswPlans}/${queries.length} planned on the HNSW index`,
          ]
            .filter(Boolean)
            .join("; "),
        })),
      ];
      const at = (k: number, efSearch: number) =>
        measured.find((m) => m.params === PARAMS[k] && m.efSearch === efSearch)!;
      const last = PARAMS.length - 1;
      // The rounds' CPU per insert, averaged.
      const insertOf = (k: number) => mean(costs[k]!.inserts.map((i) => i.cpuMs));
      const base = at(0, DEFAULT_EF_SEARCH);
      const headline =
        `${label(PARAMS[last]!)} against pgvector's defaults at ${Number(sizes!.n).toLocaleString("en-US")} entries: ` +
        `insert CPU ${ms(insertOf(last))} vs ${ms(insertOf(0))} (${ratio(insertOf(last), insertOf(0))}; ${ms(mean(unindexed.map((i) => i.cpuMs)))} without the index); ` +
        [DEFAULT_EF_SEARCH, ...PARAMS[last]!.efSearch.filter((e) => e > DEFAULT_EF_SEARCH)]
          .map((e) => {
            const m = at(last, e);
            return `at ef_search ${e} lookup CPU ${ms(m.lookup.cpuMs)} vs ${ms(base.lookup.cpuMs)}, recall@1 ${pct(m.recall, queries.length)} vs ${pct(base.recall, queries.length)}, decisions agree ${pct(m.agree, queries.length)} vs ${pct(base.agree, queries.length)}`;
          })
          .join("; ");
      return {
        title: `The semantic cache's HNSW parameters at ${Number(sizes!.n).toLocaleString("en-US")} entries`,
        setup: [
          "`bench/semantic-index.ts`: one database and one connection; the entries are loaded once, then for each parameter set the default embedder's index is dropped and built again (`CREATE INDEX`, the server's `maintenance_work_mem` and parallel workers), and the same queries and inserts run against it. The builds and inserts run in " +
            `${rounds} rounds over the parameter sets in turn (their numbers are given per round, a / b); the lookups on the first round's indexes.`,
          `Lookups are \`SemanticCacheRepository.nearest\` (\`hnsw.iterative_scan = strict_order\` as in production), each query once to warm up and once timed; recall@1 counts the lookups whose answer is as near as the exact nearest entry (the same statement ordered by the un-cast column, which no HNSW index serves), and "decisions agree" those whose hit or miss at the threshold (${threshold}) is the exact answer's. Inserts are ${insertCount} single-row \`SemanticCacheRepository.insert\` calls (autocommit, as a finished generation makes them) of new prompts, each into the loaded table, then deleted.`,
        ].join("\n\n"),
        rows,
        headline,
        goal: "",
      };
    } finally {
      await db.close();
    }
  });

type Q = (text: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>;

async function insertGenerations(
  q: Q,
  ids: string[],
  accounts: string[],
  endUsers: string[],
  prompts: string[],
  scopes: Scope[],
): Promise<void> {
  await q(
    `INSERT INTO generations (id, account_id, end_user_id, user_id, media_type, prompt, model,
            seed, priority, status, estimated_cost_usd, request_hash)
     SELECT id, a, eu, 'u', mt, p, m, 1, 'STANDARD', 'SUCCEEDED', 0, md5(id::text)
       FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[])
            AS t(id, a, eu, mt, p, m)`,
    [ids, accounts, endUsers, scopes.map((s) => s.mediaType), prompts, scopes.map((s) => s.model)],
  );
}

/** `nearest`'s statement, ordered by the un-cast column: no HNSW index can serve it. */
async function exactNearest(q: Q, embedder: string, query: Query): Promise<number | null> {
  const rows = await q(
    `SELECT 1 - (e.embedding <=> $1::vector) AS similarity
       FROM semantic_cache_entries e
       JOIN accounts a ON a.id = e.account_id AND a.semantic_cache
      WHERE e.embedder = $2 AND e.scope_key = $3 AND e.expires_at > now()
        AND EXISTS (SELECT 1 FROM accounts me WHERE me.id = $4 AND me.semantic_cache)
      ORDER BY e.embedding <=> $1::vector
      LIMIT 1`,
    [toVector(query.embedding), embedder, query.scopeKey, query.accountId],
  );
  return rows[0] ? Number(rows[0].similarity) : null;
}

/** How many of the queries the planner serves with the HNSW index. */
async function countHnswPlans(q: Q, embedder: string, queries: Query[]): Promise<number> {
  let n = 0;
  for (const query of queries) {
    const plan = await q(
      `EXPLAIN SELECT e.generation_id
         FROM semantic_cache_entries e
         JOIN accounts a ON a.id = e.account_id AND a.semantic_cache
        WHERE e.embedder = $2 AND e.scope_key = $3 AND e.expires_at > now()
          AND EXISTS (SELECT 1 FROM accounts me WHERE me.id = $4 AND me.semantic_cache)
        ORDER BY e.embedding::vector(384) <=> $1::vector(384)
        LIMIT 1`,
      [toVector(query.embedding), embedder, query.scopeKey, query.accountId],
    );
    if (plan.some((r) => String(r["QUERY PLAN"]).includes(INDEX))) n++;
  }
  return n;
}

/** Wall-clock percentiles of single calls, and the Postgres backend's CPU per call. */
type Timing = Summary & { cpuMs: number };

/**
 * Starts counting the CPU time of this connection's backend (user and system, from
 * /proc/<pid>/stat, in ticks of 10 ms); the function returned gives the milliseconds since.
 * Unlike the wall clock, it does not count waiting for the WAL flush or for a core.
 */
async function backendCpu(q: Q): Promise<() => Promise<number>> {
  const [row] = await q(`SELECT pg_backend_pid() AS pid`);
  const pid = Number(row!.pid);
  const read = () => {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command's name.
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };
  const started = read();
  return async () => {
    const [again] = await q(`SELECT pg_backend_pid() AS pid`);
    if (Number(again!.pid) !== pid) throw new Error("the connection changed while measured");
    return read() - started;
  };
}

async function timeLookups(
  q: Q,
  queries: Query[],
  nearest: (q: Query) => Promise<{ similarity: number } | null>,
): Promise<{ answers: Answer[]; summary: Timing }> {
  for (const query of queries) await nearest(query);
  const answers: Answer[] = [];
  const samples: number[] = [];
  const cpu = await backendCpu(q);
  for (const query of queries) {
    const t = performance.now();
    const match = await nearest(query);
    samples.push(performance.now() - t);
    answers.push({ similarity: match ? match.similarity : null });
  }
  const cpuMs = (await cpu()) / queries.length;
  return { answers, summary: { ...summarize(samples), cpuMs } };
}

function mean(values: number[]): number {
  return summarize(values).mean;
}

function label(p: IndexParams): string {
  const name = `m = ${p.m}, ef_construction = ${p.efConstruction}`;
  return p === PARAMS[0] ? `${name} (defaults)` : name;
}

function toVector(v: number[]): string {
  return `[${v.join(",")}]`;
}

function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
