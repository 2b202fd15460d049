/**
 * Resilience: the error rate a client sees, and the latency added, when the primary provider
 * fails 30% of its jobs and one healthy fallback exists. Two `gengate sim-provider` processes
 * (primary, fallback), a `gengate api` and a `gengate worker` on Postgres + Redis.
 *
 * Baseline, in the same run and the same processes: the primary failing none, first. Then the
 * primary is switched to failing 30% (`POST /admin/behaviour`) and the same load runs again
 * with new prompts.
 */
import { randomBytes } from "node:crypto";
import type { Client } from "graphql-ws";
import { adminKey, createPartner, gql, GENERATE, untilTerminal, wsClient } from "./lib/graphql";
import { withInfra } from "./lib/infra";
import { startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { Scenario } from "./lib/scenario";
import { ms, pct, pool, summarize, type Summary } from "./lib/stats";

const N = Number(process.env.BENCH_RESILIENCE_GENERATIONS ?? 300);
const CLIENTS = 16;
const FAILURE_RATE = 0.3;

interface Phase {
  latency: Summary;
  failed: number;
  retried: number;
  /** Final error codes of the failed ones. */
  errors: string;
  seconds: number;
}

function count(codes: string[]): string {
  const by = new Map<string, number>();
  for (const c of codes) by.set(c, (by.get(c) ?? 0) + 1);
  return [...by].map(([c, n]) => `${n} ${c}`).join(", ") || "none";
}

export const resilienceScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const token = randomBytes(12).toString("hex");
    const secret = "whsec_" + randomBytes(24).toString("base64");
    const simEnv = {
      SIM_PROVIDER_PORT: "0",
      SIM_PROVIDER_TOKEN: token,
      SIM_PROVIDER_WEBHOOK_SECRET: secret,
      SIM_LATENCY_MS: "200",
      SIM_LATENCY_JITTER: "0.5",
      SIM_PROGRESS_STEPS: "1",
      SIM_FAILURE_RATE: "0",
    };
    let primary: GengateProcess | undefined;
    let fallback: GengateProcess | undefined;
    let api: GengateProcess | undefined;
    let worker: GengateProcess | undefined;
    let clients: Client[] = [];
    try {
      [primary, fallback] = await Promise.all([
        startGengate(ctx, "sim-provider", simEnv),
        startGengate(ctx, "sim-provider", simEnv),
      ]);
      const env = {
        ...infra.env,
        SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
        SIM_PROVIDER_TOKEN: token,
        SIM_PROVIDER_WEBHOOK_SECRET: secret,
      };
      const admin = await adminKey(env);
      [api, worker] = await Promise.all([
        startGengate(ctx, "api", env),
        startGengate(ctx, "worker", env),
      ]);
      const url = api.url!;
      const partner = await createPartner(url, admin);
      clients = Array.from({ length: 4 }, () => wsClient(url, partner));

      const phase = async (tag: string): Promise<Phase> => {
        const began = performance.now();
        const outcomes = await pool(N, CLIENTS, async (i) => {
          const t0 = performance.now();
          // Distinct prompts: the simulated provider decides failure per prompt and seed.
          const { generate } = await gql<{ generate: { id: string } }>(url, partner, GENERATE, {
            input: {
              userId: `u${i % 20}`,
              mediaType: "IMAGE",
              model: "sim-image-fast",
              prompt: `${tag} ${i} a harbour in the fog`,
              width: 64,
              height: 64,
            },
          });
          const status = await untilTerminal(clients[i % clients.length]!, generate.id);
          const ms_ = performance.now() - t0;
          const { generation } = await gql<{
            generation: { attempts: Array<{ number: number }>; error: { code: string } | null };
          }>(
            url,
            partner,
            `query($id: ID!) { generation(id: $id) { attempts { number } error { code } } }`,
            { id: generate.id },
          );
          return {
            status,
            ms: ms_,
            attempts: generation.attempts.length,
            error: generation.error?.code,
          };
        });
        return {
          latency: summarize(outcomes.filter((o) => o.status === "SUCCEEDED").map((o) => o.ms)),
          failed: outcomes.filter((o) => o.status !== "SUCCEEDED").length,
          retried: outcomes.filter((o) => o.attempts > 1).length,
          errors: count(outcomes.flatMap((o) => (o.error ? [o.error] : []))),
          seconds: (performance.now() - began) / 1000,
        };
      };

      ctx.log(`baseline: ${N} generations, both providers healthy`);
      await phase("warm");
      const base = await phase(`base-${randomBytes(3).toString("hex")}`);
      ctx.log(`primary failing ${FAILURE_RATE * 100}%: ${N} generations`);
      const res = await fetch(`${primary.url}/admin/behaviour`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ failureRate: FAILURE_RATE }),
      });
      if (!res.ok) throw new Error(`admin/behaviour: ${res.status}`);
      const failing = await phase(`fail-${randomBytes(3).toString("hex")}`);
      const circuits = await gql<{
        providerHealth: Array<{
          provider: string;
          circuit: string;
          failures: number;
          requests: number;
        }>;
      }>(url, admin, `{ providerHealth { provider circuit failures requests } }`);

      const added = (q: "p50" | "p99") => failing.latency[q] - base.latency[q];
      const met = failing.failed / N < 0.005;
      return {
        title: "Resilience: the primary provider failing 30%",
        setup: `
Two \`gengate sim-provider\` processes (${simEnv.SIM_LATENCY_MS} ms ± 50% per job, one progress step):
\`simulated\`, the primary, and \`simulated-2\`, its fallback. One \`gengate api\` and one
\`gengate worker\` on Postgres + Redis, polling the providers (\`POLL_MIN_MS=10\`,
\`POLL_MAX_MS=100\`), default circuits (60 s window, 10 requests minimum, 50% threshold, 30 s
cool-down) and 3 attempts per generation. Each phase: ${N} generations, ${CLIENTS} at a time, each
followed from \`generate\` to its final event on a graphql-ws subscription. First a warm-up and
the baseline with both providers healthy; then the primary is told to fail
${FAILURE_RATE * 100}% of its jobs (decided per prompt and seed, halfway through the job) and the
phase runs again with new prompts, in the same processes.`,
        rows: [
          {
            measure: "client error rate, primary failing 30%",
            result: `${pct(failing.failed, N)} (${failing.failed} of ${N}; ${failing.errors})`,
            goal: "< 0.5%",
          },
          {
            measure: "client error rate, baseline",
            result: `${pct(base.failed, N)} (${base.failed} of ${N}; ${base.errors})`,
          },
          {
            measure: "`generate` → final event, baseline",
            result: `p50 ${ms(base.latency.p50)}, p99 ${ms(base.latency.p99)}`,
          },
          {
            measure: "`generate` → final event, primary failing 30%",
            result: `p50 ${ms(failing.latency.p50)}, p99 ${ms(failing.latency.p99)}`,
          },
          {
            measure: "added latency",
            result: `p50 ${ms(added("p50"))}, p99 ${ms(added("p99"))}`,
          },
          {
            measure: "generations that needed a second attempt",
            result: `${pct(failing.retried, N)} (baseline ${pct(base.retried, N)})`,
          },
          {
            measure: "circuits at the end",
            result: circuits.providerHealth
              .map((p) => `${p.provider} ${p.circuit} (${p.failures}/${p.requests} failed)`)
              .join(", "),
          },
        ],
        notes: [
          "A failed attempt at the primary goes to the fallback after a backoff with jitter (500 ms base); once the primary's failures pass 50% of the window its circuit opens and generations go to the fallback directly until the half-open probe. The added latency is that of the generations whose first attempt failed.",
        ],
        headline: `client error rate ${pct(failing.failed, N)} (baseline ${pct(base.failed, N)}); added latency p50 ${ms(added("p50"))}, p99 ${ms(added("p99"))}; ${pct(failing.retried, N)} needed a second attempt`,
        goal: "< 0.5% failed",
        met,
      };
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
      await Promise.all([stopGengate(api), stopGengate(worker)]);
      await Promise.all([stopGengate(primary), stopGengate(fallback)]);
    }
  });
