/**
 * Enqueue: `generate` over HTTP at a fixed, open-loop rate, against the trivial-query ceiling
 * of the same server.
 *
 *   npm run bench -- --only=enqueue
 *   BENCH_ENQUEUE_BASELINE=/elsewhere/dist/src/main.js npm run bench -- --only=enqueue
 *
 * The built program runs as two processes, `gengate api` and `gengate worker`, on a fresh
 * Postgres database and Redis prefix, with the simulated provider. The load generator sends
 * requests on a fixed schedule whatever the answers (open loop), over keep-alive sockets, and
 * measures each latency from the time the request was due, so a stalled server shows in the
 * percentiles instead of slowing the schedule down (no coordinated omission).
 *
 * Measured, on the same server in the same run, in this order:
 * - the ceiling: the highest rate of `{ __typename }` (authenticated) whose p99 stays under
 *   50 ms without errors, stepping the rate up;
 * - `generate` at ENQUEUE_RATE requests/s (distinct prompts: cache misses; many end users):
 *   p50 and p99;
 * - the highest `generate` rate whose p99 stays under 50 ms, stepped the same way.
 * Each step starts once the worker has run what the steps before queued: on two shared cores
 * its backlog would otherwise take the api's CPU (in a deployment it has hosts of its own).
 *
 * With BENCH_ENQUEUE_BASELINE (another build's `dist/src/main.js`), that program is measured
 * too, each on its own database, interleaved with this one, so a change is compared within one
 * run on the same noisy machine. BENCH_ENQUEUE_CPU_PROF=<dir> runs the api under `--cpu-prof`.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import path from "node:path";
import { Client as PgClient } from "pg";
import { adminKey, createPartner, postGraphQL } from "./lib/graphql";
import { withInfra, type Infra } from "./lib/infra";
import { MAIN, startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { BenchContext, Scenario, ScenarioReport } from "./lib/scenario";
import { pool, sleep } from "./lib/stats";

const ENQUEUE_RATE = Number(process.env.BENCH_ENQUEUE_RATE ?? 500);
const MEASURE_SECONDS = Number(process.env.BENCH_ENQUEUE_SECONDS ?? 6);
const STEP_SECONDS = Number(process.env.BENCH_ENQUEUE_STEP_SECONDS ?? 4);
const P99_BOUND_MS = 50;
const USERS = 200;
const TRIVIAL_RATES = [100, 200, 300, 400, 600, 800, 1000, 1500, 2000, 3000, 4000];
const ENQUEUE_RATES = [25, 50, 75, 100, 150, 200, 300, 400, 500, 600, 800, 1000];

interface Step {
  rate: number;
  sent: number;
  ok: number;
  errors: number;
  p50: number;
  p99: number;
  /** Requests/s answered successfully over the step. */
  achieved: number;
  seconds: number;
  /** Answered requests' latencies, ms from the time each was due. */
  latencies: number[];
  firstError?: string;
}

interface ProgramResult {
  label: string;
  enqueue: Step;
  ceiling: Step | null;
  ceilingSteps: Step[];
  sustained: Step | null;
  sustainedSteps: Step[];
  queued: number;
  /** Of those, served from the cache (must be none: what is measured is accepting misses). */
  hits: number;
}

/** The scenario as `npm run bench` runs it: this build, on a fresh database per program. */
export const enqueueScenario: Scenario = async (ctx) => report(await runEnqueue(ctx));

export async function runEnqueue(ctx: BenchContext): Promise<ProgramResult[]> {
  const programs: Program[] = [{ label: "this build", main: MAIN }];
  const baseline = process.env.BENCH_ENQUEUE_BASELINE;
  if (baseline) programs.unshift({ label: "baseline", main: path.resolve(baseline) });
  // An experiment, not a setting gengate ships: how much of the latency is the commit's wait
  // for the WAL flush.
  if (process.env.BENCH_ENQUEUE_ASYNC_COMMIT) {
    programs.push({
      label: "this build, synchronous_commit off (experiment)",
      main: MAIN,
      pgOptions: "-c synchronous_commit=off",
    });
  }
  // Every program's stack (its own database, Redis prefix, api and worker) runs for the
  // whole scenario and the measurements alternate between them, so a neighbour's load on
  // this shared machine falls on each program alike.
  const stacks: Stack[] = [];
  let results: ProgramResult[] = [];
  const open = (i: number): Promise<void> =>
    i === programs.length
      ? measureAll(stacks).then((r) => {
          results = r;
          for (const line of r.flatMap(describe)) ctx.log(line);
        })
      : withInfra(ctx, async (infra) => {
          const stack = await startStack(ctx, programs[i]!, infra);
          stacks.push(stack);
          try {
            await open(i + 1);
          } finally {
            await stack.stop();
          }
        });
  await open(0);
  return results;
}

interface Program {
  label: string;
  main: string;
  /** Extra Postgres session settings for every connection of the program. */
  pgOptions?: string;
}

interface Stack {
  label: string;
  generate: () => Promise<string | null>;
  trivial: () => Promise<string | null>;
  generations: () => Promise<number>;
  /** Generations served from the cache. */
  hits: () => Promise<number>;
  /** Resolves once the worker has no generation left to run (its backlog drained). */
  settled: () => Promise<void>;
  stop: () => Promise<void>;
}

async function measureAll(stacks: Stack[]): Promise<ProgramResult[]> {
  // Warm up, eight at a time: sockets, JIT, and every end user's first request (which
  // creates its row and the month's ledger).
  for (const s of stacks) {
    await pool(USERS, 8, s.generate);
    await pool(200, 8, s.trivial);
  }
  // The ceiling first, with the worker idle (the warm-up's generations run).
  const ceiling = await stepUp(stacks, (s) => s.trivial, TRIVIAL_RATES);
  // The fixed rate, in alternating slices.
  const slices = 3;
  const enqueue = new Map<Stack, Step[]>(stacks.map((s) => [s, []]));
  for (let i = 0; i < slices; i++) {
    // Each program goes first in turn: the one after inherits the other's worker backlog.
    for (const s of i % 2 ? [...stacks].reverse() : stacks) {
      enqueue.get(s)!.push(await openLoop(s.generate, ENQUEUE_RATE, MEASURE_SECONDS / slices));
      await sleep(500);
    }
  }
  // Every step starts with the worker idle: the backlog of the step before (the fixed rate
  // leaves thousands) would take the cores the measured api needs.
  const sustained = await stepUp(stacks, (s) => s.generate, ENQUEUE_RATES);
  const results: ProgramResult[] = [];
  for (const s of stacks) {
    results.push({
      label: s.label,
      enqueue: merge(enqueue.get(s)!),
      ceilingSteps: ceiling.get(s)!,
      ceiling: lastPassing(ceiling.get(s)!),
      sustainedSteps: sustained.get(s)!,
      sustained: lastPassing(sustained.get(s)!),
      queued: await s.generations(),
      hits: await s.hits(),
    });
  }
  return results;
}

async function startStack(ctx: BenchContext, program: Program, infra: Infra): Promise<Stack> {
  const databaseUrl = new URL(infra.databaseUrl);
  if (program.pgOptions) databaseUrl.searchParams.set("options", program.pgOptions);
  // Not infra.env: its bench defaults poll the provider every 10 ms, and the worker would take
  // more of the cores it shares with the api than with a deployment's settings.
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl.toString(),
    REDIS_URL: infra.redisUrl,
    REDIS_PREFIX: infra.redisPrefix,
    DATA_DIR: infra.dataDir,
    TOKEN_SECRET: infra.tokenSecret,
    NODE_ENV: "production",
    // The simulated provider in the worker, answering like a fast real one.
    SIM_LATENCY_MS: "1000",
    SIM_LATENCY_JITTER: "0.3",
    SIM_PROGRESS_STEPS: "1",
    // A partner's backend sending for many users through one key: the per-key limit and the
    // queue bound are sized for it; budgets never refuse (what is measured is accepting).
    RATE_LIMIT_PER_SECOND: "100000",
    RATE_LIMIT_BURST: "100000",
    MAX_QUEUED_PER_PRIORITY: "10000000",
    BUDGET_FREE_USD: "1000000",
    BUDGET_PRO_USD: "1000000",
    BUDGET_ENTERPRISE_USD: "1000000",
    METRICS_PORT: "off",
  };
  const key = await adminKey(env, program.main);
  const profDir = process.env.BENCH_ENQUEUE_CPU_PROF;
  // Their warnings and errors are printed as they come: the load generator only counts failures.
  const start = (role: "api" | "worker", nodeArgs: string[] = []) =>
    startGengate(ctx, role, env, { main: program.main, nodeArgs, echoProblems: true });
  const api = await start(
    "api",
    profDir
      ? [
          "--cpu-prof",
          `--cpu-prof-dir=${path.resolve(profDir, program.label.replace(/\W+/g, "-"))}`,
        ]
      : [],
  );
  let worker: GengateProcess | undefined;
  // The load generator's own keep-alive sockets, closed with the stack.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const stopStack = async () => {
    agent.destroy();
    await stopGengate(worker);
    await stopGengate(api);
  };
  try {
    worker = await start("worker");
    const url = api.url!;
    const partner = await createPartner(url, key);
    const tag = randomBytes(4).toString("hex");
    let n = 0;
    const generateBody = () => {
      const i = n++;
      return JSON.stringify({
        query: `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`,
        variables: {
          input: {
            userId: `user-${i % USERS}`,
            mediaType: "IMAGE",
            // Distinct prompts, far enough apart that none is a semantic hit for another
            // (prompts differing only by a number are): every request is a miss.
            prompt: `${tag} ${i} ${randomBytes(4).toString("hex")} a lighthouse at dusk`,
            // Small images: the worker renders and checks each one on the same two cores, and
            // what is measured is accepting the request, not making the picture.
            width: 64,
            height: 64,
          },
        },
      });
    };
    const trivialBody = JSON.stringify({ query: "{ __typename }" });
    // A request fails on GraphQL errors (postGraphQL) and on an answer without the field.
    const post = async (body: string, answered: (data: any) => unknown) => {
      const data = await postGraphQL<any>(url, partner, body, agent);
      if (!answered(data)) throw new Error(`no answer: ${JSON.stringify(data)}`);
      return null;
    };
    return {
      label: program.label,
      generate: () => post(generateBody(), (d) => d?.generate?.id),
      trivial: () => post(trivialBody, (d) => d?.__typename),
      generations: () => withPg(infra.databaseUrl, (pg) => countGenerations(pg)),
      hits: () =>
        withPg(infra.databaseUrl, async (pg) => {
          const { rows } = await pg.query(
            `SELECT count(*)::int AS n FROM generations WHERE cached`,
          );
          return (rows[0] as { n: number }).n;
        }),
      settled: () => workerSettled(infra.databaseUrl),
      stop: stopStack,
    };
  } catch (err) {
    await stopStack();
    throw err;
  }
}

function merge(slices: Step[]): Step {
  const all = slices.flatMap((s) => s.latencies);
  const sent = slices.reduce((n, s) => n + s.sent, 0);
  const errors = slices.reduce((n, s) => n + s.errors, 0);
  return summarize(
    slices[0]!.rate,
    sent,
    all,
    errors,
    slices.find((s) => s.firstError)?.firstError,
    slices.reduce((n, s) => n + s.seconds, 0),
  );
}

/**
 * Steps the rate up, each rate on every stack in turn, until a stack misses the bound (p99
 * over 50 ms, or any error); that stack then stops climbing.
 */
async function stepUp(
  stacks: Stack[],
  sender: (s: Stack) => () => Promise<string | null>,
  rates: number[],
): Promise<Map<Stack, Step[]>> {
  const steps = new Map<Stack, Step[]>(stacks.map((s) => [s, []]));
  let climbing = [...stacks];
  for (const [i, rate] of rates.entries()) {
    for (const s of i % 2 ? [...climbing].reverse() : climbing) {
      await Promise.all(stacks.map((x) => x.settled()));
      steps.get(s)!.push(await openLoop(sender(s), rate, STEP_SECONDS));
    }
    climbing = climbing.filter((s) => passes(steps.get(s)!.at(-1)!));
    if (climbing.length === 0) break;
  }
  return steps;
}

const passes = (s: Step) => s.errors === 0 && s.p99 < P99_BOUND_MS;

function lastPassing(steps: Step[]): Step | null {
  return steps.filter(passes).pop() ?? null;
}

/**
 * Sends `rate` requests per second for `seconds`, each at its due time whatever the answers
 * to earlier ones; latency counts from the due time.
 */
async function openLoop(
  send: () => Promise<string | null>,
  rate: number,
  seconds: number,
): Promise<Step> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  // More than this many unanswered at once is a second of backlog: the server is not keeping
  // up, and sending on would only bury the next measurement under this one's queue.
  const maxOutstanding = Math.max(100, rate);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let outstanding = 0;
  const pending: Array<Promise<void>> = [];
  const began = performance.now();
  let sent = 0;
  let overloaded = false;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (sent < total && began + sent * interval <= now) {
        if (outstanding >= maxOutstanding) {
          overloaded = true;
          return resolve();
        }
        const scheduled = began + sent * interval;
        sent++;
        outstanding++;
        pending.push(
          send()
            .then(
              () => void latencies.push(performance.now() - scheduled),
              (err: unknown) => {
                errors++;
                firstError ??= err instanceof Error ? err.message : String(err);
              },
            )
            .finally(() => outstanding--),
        );
      }
      if (sent >= total) return resolve();
      // A 1 ms timer, not a busy loop: the load generator shares the two cores with the server.
      // Requests due within the same millisecond leave together, each timed from its due time.
      setTimeout(tick, 1);
    };
    tick();
  });
  const elapsed = (performance.now() - began) / 1000;
  // Everything sent is answered before the next measurement starts.
  await Promise.all(pending);
  if (overloaded) {
    errors += total - sent;
    firstError ??= `overloaded: ${maxOutstanding} requests unanswered after ${elapsed.toFixed(1)} s; ${total - sent} not sent`;
  }
  return summarize(rate, total, latencies, errors, firstError, Math.max(elapsed, seconds));
}

function summarize(
  rate: number,
  sent: number,
  latencies: number[],
  errors: number,
  firstError: string | undefined,
  seconds: number,
): Step {
  // Failed and unanswered requests rank as the slowest of all: they cannot make a
  // percentile look better by dropping out of it.
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => {
    const i = Math.floor(q * sent);
    return i < sorted.length ? round(sorted[i]!) : Infinity;
  };
  return {
    rate,
    sent,
    ok: latencies.length,
    errors,
    p50: at(0.5),
    p99: at(0.99),
    achieved: Math.round(latencies.length / seconds),
    seconds,
    latencies,
    firstError,
  };
}

function describe(r: ProgramResult): string[] {
  return [
    `${r.label}: generate at ${r.enqueue.rate}/s for ${MEASURE_SECONDS} s: p50 ${r.enqueue.p50} ms  p99 ${r.enqueue.p99} ms  (${r.enqueue.ok} ok, ${r.enqueue.errors} errors${r.enqueue.firstError ? `: ${r.enqueue.firstError.slice(0, 200)}` : ""})`,
    `${r.label}: trivial-query ceiling ${r.ceiling?.rate ?? 0}/s (${stepsText(r.ceilingSteps)})`,
    `${r.label}: highest generate rate with p99 < ${P99_BOUND_MS} ms ${r.sustained?.rate ?? 0}/s (${stepsText(r.sustainedSteps)}) = ${ratioOf(r)} of the ceiling`,
  ];
}

function stepsText(steps: Step[]): string {
  return steps
    .map((s) => `${s.rate}/s p50 ${s.p50} p99 ${s.p99}${s.errors ? ` ${s.errors} err` : ""}`)
    .join("; ");
}

function ratioOf(r: ProgramResult): string {
  return r.ceiling && r.sustained
    ? `${Math.round((100 * r.sustained.rate) / r.ceiling.rate)}%`
    : "n/a";
}

function report(results: ProgramResult[]): ScenarioReport {
  const mine = results.find((r) => r.label === "this build")!;
  const rows = results.flatMap((r) => {
    const who = results.length > 1 ? `${r.label}: ` : "";
    return [
      {
        measure: `${who}\`generate\` at ${r.enqueue.rate}/s for ${MEASURE_SECONDS} s, open loop`,
        result: `p50 ${r.enqueue.p50} ms, p99 ${r.enqueue.p99} ms (${r.enqueue.ok} ok, ${r.enqueue.errors} errors)`,
        goal: "p99 < 10 ms",
      },
      {
        measure: `${who}ceiling: highest \`{ __typename }\` rate with p99 < ${P99_BOUND_MS} ms`,
        result: `${r.ceiling?.rate ?? 0}/s`,
      },
      {
        measure: `${who}highest \`generate\` rate with p99 < ${P99_BOUND_MS} ms`,
        result: `${r.sustained?.rate ?? 0}/s = ${ratioOf(r)} of the ceiling`,
        goal: "≥ 40% of the ceiling",
      },
      {
        measure: `${who}generations stored / served from the cache`,
        result: `${r.queued} / ${r.hits}`,
        goal: "0 from the cache",
      },
    ];
  });
  const met =
    mine.enqueue.p99 < 10 &&
    mine.ceiling !== null &&
    mine.sustained !== null &&
    mine.sustained.rate >= 0.4 * mine.ceiling.rate;
  return {
    title: "Enqueue: `generate` at a fixed rate, against the trivial-query ceiling",
    setup: `Everything on this one box: \`gengate api\` and \`gengate worker\` (separate processes,
the simulated provider in the worker, 1 s latency), Postgres, Redis and the load generator.
The load generator is open-loop: requests leave on a fixed schedule over keep-alive sockets,
and each latency counts from the time the request was due. \`generate\` requests are cache
misses (distinct prompts) for ${USERS} end users of one partner key, 64×64 images; each is
stored QUEUED, its budget reserved, and put on the queue. The ceiling is the highest rate of
\`{ __typename }\` (with the same key, so authentication included) whose p99 stays under
${P99_BOUND_MS} ms without errors, stepped up ${STEP_SECONDS} s per rate; the highest enqueue
rate is stepped the same way. Failed or unanswered requests rank as the slowest.`,
    rows,
    notes: [
      ...results.flatMap((r) => [
        `${r.label}, \`{ __typename }\` steps: ${stepsText(r.ceilingSteps)}`,
        `${r.label}, \`generate\` steps: ${stepsText(r.sustainedSteps)}`,
      ]),
      `Generations stored by the end: ${results.map((r) => `${r.label} ${r.queued}`).join(", ")}.`,
    ],
    headline: `\`generate\` at ${mine.enqueue.rate}/s p50 ${mine.enqueue.p50} ms, p99 ${mine.enqueue.p99} ms; highest rate with p99 < ${P99_BOUND_MS} ms ${mine.sustained?.rate ?? 0}/s = ${ratioOf(mine)} of the \`{ __typename }\` ceiling (${mine.ceiling?.rate ?? 0}/s)`,
    goal: "p99 < 10 ms at 500/s; highest rate ≥ 40% of the trivial-query ceiling",
    met,
  };
}

/** How long a step waits for the worker to drain what earlier steps queued, at most. */
const SETTLE_TIMEOUT_MS = 180_000;

/** Waits until no generation is queued or running (polled; the bench has no event for it). */
function workerSettled(databaseUrl: string): Promise<void> {
  return withPg(databaseUrl, async (pg) => {
    const until = Date.now() + SETTLE_TIMEOUT_MS;
    while ((await countGenerations(pg, ["QUEUED", "PROCESSING"])) > 0 && Date.now() < until) {
      await sleep(250);
    }
  });
}

/** Generations stored, or only those in one of `statuses`. */
async function countGenerations(pg: PgClient, statuses?: string[]): Promise<number> {
  const { rows } = await pg.query(
    `SELECT count(*)::int AS n FROM generations WHERE $1::text[] IS NULL OR status = ANY($1)`,
    [statuses ?? null],
  );
  return (rows[0] as { n: number }).n;
}

async function withPg<T>(databaseUrl: string, run: (pg: PgClient) => Promise<T>): Promise<T> {
  const pg = new PgClient({ connectionString: databaseUrl });
  await pg.connect();
  try {
    return await run(pg);
  } finally {
    await pg.end();
  }
}

const round = (v: number) => Math.round(v * 10) / 10;
