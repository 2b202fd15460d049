/**
 * In flight: BENCH_INFLIGHT_GENERATIONS generations waiting on a 60-second provider. They are
 * sent at a steady rate; the api's and the worker's memory are sampled throughout, and the
 * `generate` latency of the first thousand is compared with the last thousand's. The claim
 * under test: a generation waiting on its provider costs a row and a delayed queue job, not a
 * worker slot, a socket or memory in either process.
 *
 * Baseline, in the same run: the same processes idle, after a warm-up, before the load.
 */
import { randomBytes } from "node:crypto";
import Redis from "ioredis";
import { Client as PgClient } from "pg";
import { adminKey, createPartner, gql, GENERATE } from "./lib/graphql";
import { withInfra } from "./lib/infra";
import { Inspector, MemorySampler } from "./lib/memory";
import { rssBytes, startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { Scenario } from "./lib/scenario";
import { int, kb, mb, ms, pool, ratio, sleep, summarize } from "./lib/stats";

const TOTAL = Number(process.env.BENCH_INFLIGHT_GENERATIONS ?? 10_000);
const RATE = Number(process.env.BENCH_INFLIGHT_RATE ?? 250);
const PROVIDER_MS = 60_000;
const CONCURRENCY = "32";
const POLL_MAX_MS = "30000";
const MAX_PENDING = 64;

export const inFlightScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const env = {
      ...infra.env,
      SIM_LATENCY_MS: String(PROVIDER_MS),
      SIM_LATENCY_JITTER: "0",
      SIM_PROGRESS_STEPS: "1",
      POLL_MIN_MS: "500",
      POLL_MAX_MS,
      RECONCILE_STALE_SECONDS: "120",
      WORKER_CONCURRENCY: CONCURRENCY,
      DB_POOL_SIZE: "20",
      MAX_QUEUED_PER_PRIORITY: "1000000",
    };
    const admin = await adminKey(env);
    let api: GengateProcess | undefined;
    let worker: GengateProcess | undefined;
    const inspectors: Inspector[] = [];
    const pg = new PgClient({ connectionString: infra.databaseUrl });
    await pg.connect();
    const redis = new Redis(infra.redisUrl);
    try {
      [api, worker] = await Promise.all([
        startGengate(ctx, "api", env, { inspect: true }),
        startGengate(ctx, "worker", env, { inspect: true }),
      ]);
      const [apiInspector, workerInspector] = await Promise.all([
        Inspector.connect(api.inspectorUrl!),
        Inspector.connect(worker.inspectorUrl!),
      ]);
      inspectors.push(apiInspector, workerInspector);
      const url = api.url!;
      const partner = await createPartner(url, admin);
      const input = (i: number, prompt: string) => ({
        userId: `u${i % 500}`,
        mediaType: "IMAGE",
        model: "sim-image-fast",
        prompt,
        width: 64,
        height: 64,
      });

      // Warm-up: the whole path once per user, the provider answering at once.
      ctx.log("warm-up: 200 generations with a zero-latency provider");
      await pool(200, 32, (i) =>
        gql(url, partner, GENERATE, { input: input(i, `warm ${i} [sim:latency=0]`) }),
      );
      for (;;) {
        const { rows } = await pg.query(
          `SELECT count(*)::int AS n FROM generations WHERE status NOT IN ('SUCCEEDED','FAILED')`,
        );
        if ((rows[0] as { n: number }).n === 0) break;
        await sleep(250);
      }
      await sleep(1000);
      const memory = async () => {
        const [apiHeap, workerHeap] = await Promise.all([
          apiInspector.heapUsed(true),
          workerInspector.heapUsed(true),
        ]);
        return {
          api: { rss: rssBytes(api!.pid), heap: apiHeap },
          worker: { rss: rssBytes(worker!.pid), heap: workerHeap },
          redis: await redisUsed(redis),
        };
      };
      const idle = await memory();

      // The load: TOTAL generations at RATE per second, each timed from its own send.
      ctx.log(`${TOTAL} generations at ${RATE}/s on a ${PROVIDER_MS / 1000} s provider`);
      const samplers = [
        new MemorySampler(api, apiInspector).start(1000),
        new MemorySampler(worker, workerInspector).start(1000),
      ];
      const inFlight: Array<{ t: number; n: number }> = [];
      const tag = randomBytes(3).toString("hex");
      const began = performance.now();
      const counter = setInterval(() => {
        void pg
          .query(`SELECT count(*)::int AS n FROM generations WHERE status = 'PROCESSING'`)
          .then(({ rows }) =>
            inFlight.push({ t: performance.now() - began, n: (rows[0] as { n: number }).n }),
          );
      }, 2000);
      const latencies: number[] = new Array(TOTAL);
      let refused = 0;
      const pending = new Set<Promise<void>>();
      for (let i = 0; i < TOTAL; i++) {
        const due = began + (i * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        // The rate is the goal; if the api falls behind, at most MAX_PENDING wait at once, so
        // that the latency measured is the api's and not a queue in this process.
        while (pending.size >= MAX_PENDING) await Promise.race(pending);
        const p = (async () => {
          const t = performance.now();
          try {
            await gql(url, partner, GENERATE, {
              input: input(i, `in flight ${tag} ${i}`),
            });
          } catch {
            refused++;
          }
          latencies[i] = performance.now() - t;
        })();
        pending.add(p);
        void p.finally(() => pending.delete(p));
      }
      await Promise.all(pending);
      const sent = (performance.now() - began) / 1000;
      ctx.log(`sent in ${sent.toFixed(1)} s; waiting for every submit step`);
      // Every accepted generation submitted to the provider (PROCESSING), or 20 s.
      let held = 0;
      const settle = performance.now();
      while (performance.now() - settle < 20_000) {
        const { rows } = await pg.query(
          `SELECT count(*) FILTER (WHERE status = 'PROCESSING')::int AS n,
                  count(*) FILTER (WHERE status = 'QUEUED')::int AS q
             FROM generations WHERE prompt LIKE $1`,
          [`in flight ${tag} %`],
        );
        const r = rows[0] as { n: number; q: number };
        held = r.n;
        if (r.q === 0) break;
        await sleep(500);
      }
      clearInterval(counter);
      const loaded = await memory();
      const [apiSamples, workerSamples] = samplers.map((s) => s.stop());
      const elapsed = (performance.now() - began) / 1000;
      const { rows: doneRows } = await pg.query(
        `SELECT count(*) FILTER (WHERE status = 'SUCCEEDED')::int AS done FROM generations WHERE prompt LIKE $1`,
        [`in flight ${tag} %`],
      );
      const done = (doneRows[0] as { done: number }).done;
      const delayed = await redis.zcard(`${infra.redisPrefix}:generations:delayed`);

      const first = summarize(latencies.slice(0, 1000));
      const last = summarize(latencies.slice(-1000));
      const peak = (s: typeof apiSamples, k: "rss" | "heap") => Math.max(...s!.map((x) => x[k]));
      const peakInFlight = Math.max(held, ...inFlight.map((x) => x.n));
      const perGen = (a: number, b: number) => (peakInFlight ? (b - a) / peakInFlight : NaN);
      ctx.log(
        `${peakInFlight} in flight; api heap ${mb(idle.api.heap)} → ${mb(loaded.api.heap)}, worker heap ${mb(idle.worker.heap)} → ${mb(loaded.worker.heap)}; latency p50 ratio ${ratio(last.p50, first.p50)}`,
      );
      const flat =
        loaded.api.heap - idle.api.heap < 32 * 2 ** 20 &&
        loaded.worker.heap - idle.worker.heap < 32 * 2 ** 20;
      const met = flat && last.p99 <= 2 * first.p99 && peakInFlight >= 0.95 * TOTAL;
      return {
        title: `In flight: ${int(TOTAL)} generations waiting on a ${PROVIDER_MS / 1000}-second provider`,
        setup: `
One \`gengate api\` and one \`gengate worker\` process on Postgres + Redis, both started with
\`--inspect\` so the bench can read their heap after a full GC. The simulated provider runs in
the worker and takes ${PROVIDER_MS / 1000} s per job (\`SIM_LATENCY_MS=${PROVIDER_MS}\`, no jitter, one
progress step); \`WORKER_CONCURRENCY=${CONCURRENCY}\`, \`POLL_MAX_MS=${POLL_MAX_MS}\` (a job's status is
checked every 30 s: twice in its minute), \`MAX_QUEUED_PER_PRIORITY\` raised out of the way.
After a warm-up of 200 generations with a zero-latency provider, ${int(TOTAL)} generations
(distinct prompts, 500 end users) are sent at ${RATE}/s (at most ${MAX_PENDING} unanswered at once,
should the api fall behind), each timed from its own send; RSS and
heap (without GC) of both processes are sampled every second and the PROCESSING rows counted
every 2 s. "Loaded" is measured once every generation has been submitted to the provider.

Baseline: the same two processes idle after the warm-up, in the same run.`,
        rows: [
          {
            measure: "generations held in flight at once (PROCESSING rows)",
            result: `${int(peakInFlight)} of ${int(TOTAL)} sent (${refused} refused, ${done} already finished); ${int(delayed)} delayed queue jobs`,
            goal: int(TOTAL),
          },
          {
            measure: "sending rate achieved",
            result: `${(TOTAL / sent).toFixed(0)}/s (${sent.toFixed(1)} s for ${int(TOTAL)}; asked ${RATE}/s)`,
          },
          {
            measure: "worker heap after GC: idle → loaded (peak RSS)",
            result: `${mb(idle.worker.heap)} → ${mb(loaded.worker.heap)} (${kb(perGen(idle.worker.heap, loaded.worker.heap))} per generation in flight); RSS ${mb(idle.worker.rss)} → ${mb(loaded.worker.rss)}, peak ${mb(peak(workerSamples, "rss"))}`,
            goal: "flat",
          },
          {
            measure: "api heap after GC: idle → loaded (peak RSS)",
            result: `${mb(idle.api.heap)} → ${mb(loaded.api.heap)} (${kb(perGen(idle.api.heap, loaded.api.heap))} per generation in flight); RSS ${mb(idle.api.rss)} → ${mb(loaded.api.rss)}, peak ${mb(peak(apiSamples, "rss"))}`,
            goal: "flat",
          },
          {
            measure: "Redis memory: idle → loaded",
            result: `${mb(idle.redis)} → ${mb(loaded.redis)} (${kb(perGen(idle.redis, loaded.redis))} per generation in flight)`,
          },
          {
            measure: "`generate` latency, first 1,000",
            result: `p50 ${ms(first.p50)}, p99 ${ms(first.p99)}`,
          },
          {
            measure: "`generate` latency, last 1,000",
            result: `p50 ${ms(last.p50)}, p99 ${ms(last.p99)}`,
          },
          {
            measure: "last / first",
            result: `p50 ${ratio(last.p50, first.p50)}, p99 ${ratio(last.p99, first.p99)}`,
            goal: "does not grow",
          },
        ],
        notes: [
          `Scenario time ${elapsed.toFixed(0)} s from the first send. In-flight count every 2 s: ${inFlight
            .map((x) => int(x.n))
            .join(", ")}.`,
          `Worker heap every second (MB, no GC): ${workerSamples!
            .filter((_, i) => i % 5 === 0)
            .map((x) => (x.heap / 2 ** 20).toFixed(0))
            .join(", ")}; api: ${apiSamples!
            .filter((_, i) => i % 5 === 0)
            .map((x) => (x.heap / 2 ** 20).toFixed(0))
            .join(", ")}.`,
          "A generation waiting on its provider is a PROCESSING row and one delayed `poll` job in Redis; no worker slot is held, so WORKER_CONCURRENCY does not bound how many wait. What costs is the polling: with the default POLL_MAX_MS (5 s) 10,000 waiting generations would be 2,000 status checks a second; providers with webhooks (WEBHOOK_BASE_URL) need one check a minute.",
        ],
        headline: `${int(peakInFlight)} in flight; heap after GC worker ${mb(idle.worker.heap)} → ${mb(loaded.worker.heap)}, api ${mb(idle.api.heap)} → ${mb(loaded.api.heap)}; \`generate\` p99 last/first 1,000 ${ratio(last.p99, first.p99)}`,
        goal: "memory flat, enqueue latency not growing",
        met,
      };
    } finally {
      for (const i of inspectors) i.close();
      await Promise.all([stopGengate(api), stopGengate(worker)]);
      await pg.end();
      redis.disconnect();
    }
  });

async function redisUsed(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}
