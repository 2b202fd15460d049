/**
 * The benchmarks of issue #9, on the production path: real Postgres and Redis, the api and the
 * worker as separate processes, the simulated provider. Each scenario measures its ceiling in
 * the same run, so its result is a ratio that holds on a noisy machine.
 *
 *   npm run bench                          # every scenario of the full run, in order
 *   npm run bench -- --only=fan-out        # one (or a comma-separated few), by name
 *   npm run bench -- --only=end-to-end --cpu-prof=worker   # profiles in bench/profiles/
 *
 * Each writes bench/results/<date>-<name>.md; the run writes bench/results/<date>-summary.md
 * and regenerates the summary table in bench/README.md. BENCH_PG_URL and BENCH_REDIS_URL
 * name the servers (a Postgres role that may create databases).
 */
import path from "node:path";
import { describeMachine } from "./lib/machine";
import { writeReport, writeSummary, type SummaryRow } from "./lib/results";
import type { BenchContext, ScenarioEntry } from "./lib/scenario";

/**
 * Every scenario, in the order of a full run. A scenario is `bench/<name>.ts` exporting a
 * `Scenario` (see lib/scenario.ts); adding one is adding its line here.
 */
const SCENARIOS: ScenarioEntry[] = [
  {
    name: "enqueue",
    inFullRun: true,
    load: async () => (await import("./enqueue.js")).enqueueScenario,
  },
  {
    name: "end-to-end",
    inFullRun: true,
    load: async () => (await import("./end-to-end.js")).endToEndScenario,
  },
  { name: "cache", inFullRun: true, load: async () => (await import("./cache.js")).cacheScenario },
  {
    name: "fan-out",
    inFullRun: true,
    load: async () => (await import("./fan-out.js")).fanOutScenario,
  },
  {
    name: "in-flight",
    inFullRun: true,
    load: async () => (await import("./in-flight.js")).inFlightScenario,
  },
  {
    name: "resilience",
    inFullRun: true,
    load: async () => (await import("./resilience.js")).resilienceScenario,
  },
  // Minutes of loading 10 million rows: run it on its own.
  { name: "usage", inFullRun: false, load: async () => (await import("./usage.js")).usageScenario },
  // A setting's cost and recall rather than a goal: run it when the index changes.
  {
    name: "semantic-index",
    inFullRun: false,
    load: async () => (await import("./semantic-index.js")).semanticIndexScenario,
  },
];

async function main() {
  const arg = (name: string) =>
    process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const only = arg("only")?.split(",").filter(Boolean);
  const unknown = only?.filter((n) => !SCENARIOS.some((s) => s.name === n)) ?? [];
  if (unknown.length) {
    console.error(
      `unknown scenario ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    );
    process.exit(2);
  }
  const chosen = SCENARIOS.filter((s) => (only ? only.includes(s.name) : s.inFullRun));
  const pgAdminUrl = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  const redisUrl = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
  const profRoles = arg("cpu-prof");
  const machine = await describeMachine(pgAdminUrl, redisUrl);
  const began = performance.now();
  console.log(`bench: ${chosen.map((s) => s.name).join(", ")}\nmachine: ${machine.line}`);

  const ran: SummaryRow[] = [];
  const failed: string[] = [];
  for (const entry of chosen) {
    const ctx: BenchContext = {
      pgAdminUrl,
      redisUrl,
      date: new Date().toISOString().slice(0, 10),
      machine,
      cpuProf: profRoles
        ? {
            roles: new Set(profRoles.split(",")),
            dir: path.resolve(__dirname, "../../bench/profiles", entry.name),
          }
        : null,
      log: (line) => console.log(`${entry.name}: ${line}`),
    };
    const t = performance.now();
    try {
      const scenario = await entry.load();
      const report = await scenario(ctx);
      const file = writeReport(ctx, entry.name, report);
      ran.push({ name: entry.name, report, file });
      ctx.log(`${report.headline}`);
      ctx.log(`done in ${((performance.now() - t) / 1000).toFixed(0)} s, written to ${file}`);
    } catch (err) {
      failed.push(entry.name);
      console.error(`${entry.name}: FAILED after ${((performance.now() - t) / 1000).toFixed(0)} s`);
      console.error(err);
    }
  }
  if (ran.length) {
    const summary = writeSummary(
      {
        pgAdminUrl,
        redisUrl,
        date: new Date().toISOString().slice(0, 10),
        machine,
        cpuProf: null,
        log: () => {},
      },
      ran,
      SCENARIOS.map((s) => s.name),
    );
    console.log(`\nsummary written to ${summary} and bench/README.md`);
  }
  console.log(
    `bench: ${ran.length} scenario(s) in ${((performance.now() - began) / 1000).toFixed(0)} s` +
      (failed.length ? `; FAILED: ${failed.join(", ")}` : ""),
  );
  process.exit(failed.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
