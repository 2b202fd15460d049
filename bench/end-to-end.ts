/**
 * End to end: completed generations per second, and the time from sending `generate` to the
 * SUCCEEDED event on a graphql-ws subscription, with a provider that answers at once. The api
 * and the worker are separate processes on Postgres + Redis; the simulated provider runs in
 * the worker (zero latency, one progress step), so what is measured is gengate's own cost.
 *
 * Ceiling, in the same run: raw BullMQ on the same Redis, `Queue.addBulk` of no-op jobs and a
 * `Worker` with the same concurrency processing them.
 *
 * Phases: (1) closed loop, BENCH_E2E_GENERATIONS generations with BENCH_E2E_INFLIGHT of them
 * under way at any time, each followed on its own subscription; (2) the worker alone: it is
 * stopped, BENCH_E2E_DRAIN generations are queued, it is started again and drains them, timed
 * by the rows' own timestamps; (3) the ceiling.
 */
import { randomBytes } from "node:crypto";
import { Queue, Worker, type RedisOptions as BullRedisOptions } from "bullmq";
import { Client as PgClient } from "pg";
import { redisOptions } from "../src/infra/redis";
import { adminKey, createPartner, gql, GENERATE, untilTerminal, wsClient } from "./lib/graphql";
import { deleteKeys, withInfra } from "./lib/infra";
import { startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { Scenario } from "./lib/scenario";
import { int, ms, pct, pool, sleep, summarize } from "./lib/stats";
import type { Client } from "graphql-ws";

const N = Number(process.env.BENCH_E2E_GENERATIONS ?? 1000);
const INFLIGHT = Number(process.env.BENCH_E2E_INFLIGHT ?? 200);
const DRAIN = Number(process.env.BENCH_E2E_DRAIN ?? 500);
const SOCKETS = 8;
const USERS = 200;
/** Queue steps a worker runs at once. Steps wait on Postgres and Redis, not on the CPU. */
const CONCURRENCY = process.env.BENCH_E2E_WORKER_CONCURRENCY ?? "32";
const CEILING_JOBS = Number(process.env.BENCH_E2E_CEILING_JOBS ?? 10_000);

export const endToEndScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const env = {
      ...infra.env,
      WORKER_CONCURRENCY: CONCURRENCY,
      // Two connections per concurrent step at most (a transaction and a read beside it).
      DB_POOL_SIZE: "20",
      MAX_QUEUED_PER_PRIORITY: "1000000",
    };
    const admin = await adminKey(env);
    let api: GengateProcess | undefined;
    let worker: GengateProcess | undefined;
    let clients: Client[] = [];
    const pg = new PgClient({ connectionString: infra.databaseUrl });
    await pg.connect();
    try {
      [api, worker] = await Promise.all([
        startGengate(ctx, "api", env),
        startGengate(ctx, "worker", env),
      ]);
      const url = api.url!;
      const partner = await createPartner(url, admin);
      clients = Array.from({ length: SOCKETS }, () => wsClient(url, partner));
      let seq = 0;
      const input = (tag: string) => {
        const i = seq++;
        return {
          userId: `u${i % USERS}`,
          mediaType: "IMAGE",
          model: "sim-image-fast",
          // Distinct prompts: every request is paid for, none is a cache hit.
          prompt: `${tag} ${i} ${randomBytes(4).toString("hex")} a lighthouse at dusk`,
          width: 64,
          height: 64,
        };
      };
      const followed = async (tag: string, i: number) => {
        const t0 = performance.now();
        const { generate } = await gql<{ generate: { id: string } }>(url, partner, GENERATE, {
          input: input(tag),
        });
        const accepted = performance.now() - t0;
        const status = await untilTerminal(clients[i % SOCKETS]!, generate.id);
        return { total: performance.now() - t0, accepted, status };
      };

      ctx.log(`warm-up: 200 generations`);
      await pool(200, 50, (i) => followed("warm", i));

      ctx.log(`closed loop: ${N} generations, ${INFLIGHT} under way at a time`);
      const began = performance.now();
      let completed = 0;
      const progress = setInterval(
        () =>
          ctx.log(`  ${completed} done after ${((performance.now() - began) / 1000).toFixed(0)} s`),
        10_000,
      );
      const runs = await pool(N, INFLIGHT, (i) =>
        followed("e2e", i).finally(() => completed++),
      ).finally(() => clearInterval(progress));
      const seconds = (performance.now() - began) / 1000;
      const ok = runs.filter((r) => r.status === "SUCCEEDED");
      const total = summarize(ok.map((r) => r.total));
      const accepted = summarize(runs.map((r) => r.accepted));
      const rate = ok.length / seconds;
      ctx.log(`${rate.toFixed(0)} generations/s, p50 ${ms(total.p50)}, p99 ${ms(total.p99)}`);

      // The worker alone: queue DRAIN generations with no worker, then time the drain.
      await stopGengate(worker);
      worker = undefined;
      ctx.log(`worker drain: queueing ${DRAIN} generations with the worker stopped`);
      const drainTag = `drain-${randomBytes(3).toString("hex")}`;
      await pool(DRAIN, 64, () =>
        gql(url, partner, GENERATE, { input: input(drainTag) }).then(() => undefined),
      );
      worker = await startGengate(ctx, "worker", env);
      const drainBegan = performance.now();
      for (;;) {
        const { rows } = await pg.query(
          `SELECT count(*)::int AS n FROM generations WHERE prompt LIKE $1 AND status IN ('SUCCEEDED','FAILED')`,
          [`${drainTag} %`],
        );
        if ((rows[0] as { n: number }).n >= DRAIN) break;
        if (performance.now() - drainBegan > 180_000) throw new Error("drain did not finish");
        await sleep(200);
      }
      const { rows: drainRows } = await pg.query(
        `SELECT count(*) FILTER (WHERE status = 'SUCCEEDED')::int AS ok,
                extract(epoch FROM max(completed_at) - min(started_at))::float8 AS seconds
           FROM generations WHERE prompt LIKE $1`,
        [`${drainTag} %`],
      );
      const drain = drainRows[0] as { ok: number; seconds: number };
      const drainRate = drain.ok / drain.seconds;
      ctx.log(`worker alone: ${drainRate.toFixed(0)} generations/s`);

      await Promise.all(clients.map((c) => c.dispose()));
      clients = [];
      await Promise.all([stopGengate(api), stopGengate(worker)]);
      api = worker = undefined;

      ctx.log(`ceiling: raw BullMQ, ${CEILING_JOBS} no-op jobs, concurrency ${CONCURRENCY}`);
      const ceiling = await rawBullMq(infra.redisUrl, Number(CONCURRENCY), CEILING_JOBS);
      ctx.log(`ceiling: ${ceiling.toFixed(0)} jobs/s`);

      const met = rate >= 1000 && rate >= 0.15 * ceiling;
      return {
        title: "End to end: generations per second, mutation to SUCCEEDED event",
        setup: `
One \`gengate api\` and one \`gengate worker\` process on Postgres + Redis (worker
\`WORKER_CONCURRENCY=${CONCURRENCY}\`, \`DB_POOL_SIZE=20\` in each, \`LOG_LEVEL=info\`), the
simulated provider in the worker answering at once (\`SIM_LATENCY_MS=0\`, one progress step,
\`POLL_MIN_MS=10\`): a generation is a \`generate\` mutation, a submit step, a status step that
renders and stores a 64×64 PNG, the quality gate, settlement, usage, the cache entries, and the
SUCCEEDED event over Redis pub/sub to a graphql-ws subscriber. The bench process is the client:
${N} generations after 200 of warm-up, ${INFLIGHT} under way at any time (a closed loop: each
sends \`generate\`, subscribes to \`generationUpdated\` on one of ${SOCKETS} sockets, and waits for
SUCCEEDED), distinct prompts (no cache hits), ${USERS} end users of one partner.

"Worker alone": the worker stopped, ${DRAIN} generations queued, the worker started again; its
rate is the rows' own \`started_at\` to \`completed_at\` span. Ceiling: BullMQ itself on the same
Redis, in the bench process: \`Queue.addBulk\` of ${int(CEILING_JOBS)} no-op jobs (1,000 a call,
removed on completion like gengate's) and a \`Worker\` of concurrency ${CONCURRENCY} processing
them, from the first add to the last completion.`,
        rows: [
          {
            measure: "completed generations per second (closed loop)",
            result: `${rate.toFixed(0)} /s (${ok.length} of ${N} in ${seconds.toFixed(1)} s)`,
            goal: "≥ 1,000 /s",
          },
          {
            measure: "`generate` → SUCCEEDED event",
            result: `p50 ${ms(total.p50)}, p90 ${ms(total.p90)}, p99 ${ms(total.p99)}`,
          },
          {
            measure: "`generate` round trip (of which)",
            result: `p50 ${ms(accepted.p50)}, p99 ${ms(accepted.p99)}`,
          },
          {
            measure: "the worker alone, draining a queue",
            result: `${drainRate.toFixed(0)} generations/s (${drain.ok} of ${DRAIN} in ${drain.seconds.toFixed(1)} s)`,
          },
          {
            measure: "ceiling: raw BullMQ add + process, no-op jobs",
            result: `${ceiling.toFixed(0)} jobs/s`,
          },
          {
            measure: "end to end / ceiling",
            result: `${pct(rate, ceiling)} (worker alone ${pct(drainRate, ceiling)})`,
            goal: "≥ 15%",
          },
        ],
        notes: [
          `Each generation is two queue steps (submit, then the status check ${"`POLL_MIN_MS`"} later), so the ceiling for a gengate generation is half the raw job rate before any of gengate's own work.`,
          `${runs.length - ok.length} of ${N} did not reach SUCCEEDED on their subscription: ${outcomes(runs)}.`,
        ],
        headline: `${rate.toFixed(0)} generations/s, p99 ${ms(total.p99)} (worker alone ${drainRate.toFixed(0)}/s); raw BullMQ ${ceiling.toFixed(0)} jobs/s: ${pct(rate, ceiling)}`,
        goal: "≥ 1,000/s and ≥ 15% of raw BullMQ",
        met,
      };
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
      await Promise.all([stopGengate(api), stopGengate(worker)]);
      await pg.end();
    }
  });

/** Jobs per second of BullMQ alone: bulk adds of no-op jobs and a worker, same Redis. */
export async function rawBullMq(redisUrl: string, concurrency: number, jobs: number) {
  const prefix = `gengate-bench-raw-${randomBytes(3).toString("hex")}`;
  const connection = redisOptions(redisUrl) as BullRedisOptions;
  const queue = new Queue("raw", { connection, prefix });
  let done = 0;
  let finished!: () => void;
  const all = new Promise<void>((resolve) => (finished = resolve));
  const worker = new Worker("raw", async () => {}, { connection, prefix, concurrency });
  worker.on("completed", () => {
    if (++done === jobs) finished();
  });
  await worker.waitUntilReady();
  const began = performance.now();
  for (let i = 0; i < jobs; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => ({
        name: "submit",
        data: { generationId: `${i + k}` },
        opts: { jobId: `job-${i + k}`, removeOnComplete: true, removeOnFail: true },
      })),
    );
  }
  await all;
  const rate = jobs / ((performance.now() - began) / 1000);
  await worker.close();
  await queue.close();
  await deleteKeys(redisUrl, `${prefix}*`);
  return rate;
}

/** How the subscriptions ended, by final status ("COMPLETE": completed with none). */
function outcomes(runs: Array<{ status: string }>): string {
  const by = new Map<string, number>();
  for (const r of runs) by.set(r.status, (by.get(r.status) ?? 0) + 1);
  return [...by].map(([s, n]) => `${n} ${s}`).join(", ");
}
