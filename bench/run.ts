/**
 * Benchmarks of the gateway's own overhead, on the production path (Postgres + Redis) and the
 * embedded default, with the simulated provider answering at once (SIM_LATENCY_MS=0).
 *
 *   npm run bench                 # both paths
 *   npm run bench -- --only=pg    # one path (pg, fallback, cache, enqueue, usage, embedded)
 *
 * Prints medians and p95s measured in this one run; record them in bench/results/.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { createClient } from "graphql-ws";
import { Client as PgClient } from "pg";
import WebSocket from "ws";
import { cacheScenario } from "./cache";
import { enqueueScenario } from "./enqueue";
import { usageScenario } from "./usage";

const MAIN = path.resolve(__dirname, "../src/main.js");
const PG_ADMIN = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 400);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);

interface Proc {
  child: ChildProcess;
  port?: number;
}

function start(role: string, env: Record<string, string>): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, role], {
      env: { ...process.env, ...env, LOG_LEVEL: "info", PORT: "0", HOST: "127.0.0.1" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const rl = readline.createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { msg?: string; port?: number };
        if (msg.msg === "api listening" || msg.msg === "sim-provider listening")
          resolve({ child, port: msg.port });
        if (msg.msg === "worker consuming" && role === "worker") resolve({ child });
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)));
  });
}

function stop(p: Proc): Promise<void> {
  return new Promise((resolve) => {
    if (p.child.exitCode !== null) return resolve();
    p.child.once("exit", () => resolve());
    p.child.kill("SIGTERM");
  });
}

function run(args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`${args[0]} exited with ${code}`)),
    );
  });
}

async function gql(
  url: string,
  key: string,
  query: string,
  variables: Record<string, unknown> = {},
) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown };
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

function stats(samples: number[]): { median: number; p95: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: round(at(0.5)), p95: round(at(0.95)) };
}

const round = (v: number) => Math.round(v * 10) / 10;

async function pool<T>(
  n: number,
  concurrency: number,
  task: (i: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        results[i] = await task(i);
      }
    }),
  );
  return results;
}

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;

async function scenario(name: string, env: Record<string, string>) {
  const key = await run(["create-key", "--role", "admin"], env);
  const api = await start("all", env);
  const url = `http://127.0.0.1:${api.port}`;
  try {
    const partner = (
      await gql(url, key, `mutation { createAccount(name: "bench") { apiKey { key } } }`)
    ).createAccount.apiKey.key as string;
    // Warm up connections, JIT and caches.
    await pool(20, 4, (i) =>
      gql(url, partner, GENERATE, {
        input: { userId: "warm", mediaType: "IMAGE", prompt: `warm ${i}`, width: 64, height: 64 },
      }),
    );

    const began = performance.now();
    const latencies = await pool(REQUESTS, CONCURRENCY, async (i) => {
      const t = performance.now();
      await gql(url, partner, GENERATE, {
        input: {
          userId: `u${i % 50}`,
          mediaType: "IMAGE",
          prompt: `bench ${i}`,
          width: 64,
          height: 64,
        },
      });
      return performance.now() - t;
    });
    const seconds = (performance.now() - began) / 1000;
    const generate = stats(latencies);

    // End to end: generate, then the SUCCEEDED event over graphql-ws (provider answers at once).
    const ws = createClient({
      url: url.replace("http", "ws") + "/graphql",
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${partner}` },
    });
    const e2e = await pool(100, 4, async (i) => {
      const t = performance.now();
      const { generate: g } = await gql(url, partner, GENERATE, {
        input: { userId: "e2e", mediaType: "IMAGE", prompt: `e2e ${i}`, width: 64, height: 64 },
      });
      await new Promise<void>((resolve, reject) => {
        const dispose = ws.subscribe<{ generationUpdated: { type: string } }>(
          {
            query: `subscription($id: ID!) { generationUpdated(id: $id) { type } }`,
            variables: { id: g.id },
          },
          {
            next: (m) => {
              if (m.data?.generationUpdated.type === "SUCCEEDED") {
                dispose();
                resolve();
              }
            },
            error: reject,
            complete: () => resolve(),
          },
        );
      });
      return performance.now() - t;
    });
    await ws.dispose();
    const endToEnd = stats(e2e);
    console.log(
      `${name.padEnd(22)} generate p50 ${generate.median} ms  p95 ${generate.p95} ms  ${round(REQUESTS / seconds)} req/s (concurrency ${CONCURRENCY})  |  end-to-end p50 ${endToEnd.median} ms  p95 ${endToEnd.p95} ms`,
    );
  } finally {
    await stop(api);
  }
}

/**
 * The error rate a client sees when the primary provider fails 30% of its jobs and one healthy
 * fallback exists: two `gengate sim-provider` processes, gengate on Postgres + Redis.
 */
async function fallbackScenario(base: Record<string, string>, pg: string, dataDir: string) {
  const token = randomBytes(12).toString("hex");
  const secret = "whsec_" + randomBytes(24).toString("base64");
  const simEnv = (failureRate: string) => ({
    SIM_PROVIDER_PORT: "0",
    HOST: "127.0.0.1",
    SIM_PROVIDER_TOKEN: token,
    SIM_PROVIDER_WEBHOOK_SECRET: secret,
    SIM_LATENCY_MS: "200",
    SIM_LATENCY_JITTER: "0.5",
    SIM_PROGRESS_STEPS: "1",
    SIM_FAILURE_RATE: failureRate,
  });
  const primary = await start("sim-provider", simEnv("0.3"));
  const fallback = await start("sim-provider", simEnv("0"));
  const env = {
    ...base,
    DATABASE_URL: pg,
    REDIS_URL,
    REDIS_PREFIX: `gengate-bench-${randomBytes(3).toString("hex")}`,
    DATA_DIR: dataDir,
    SIM_PROVIDER_URL: `http://127.0.0.1:${primary.port},http://127.0.0.1:${fallback.port}`,
    SIM_PROVIDER_TOKEN: token,
    SIM_PROVIDER_WEBHOOK_SECRET: secret,
  };
  const key = await run(["create-key", "--role", "admin"], env);
  const api = await start("all", env);
  const url = `http://127.0.0.1:${api.port}`;
  try {
    const partner = (
      await gql(url, key, `mutation { createAccount(name: "bench") { apiKey { key } } }`)
    ).createAccount.apiKey.key as string;
    const n = Number(process.env.BENCH_FALLBACK_GENERATIONS ?? 300);
    const outcomes = await pool(n, 8, async (i) => {
      // Distinct prompts: the simulated provider decides failure per prompt and seed.
      const { generate: g } = await gql(url, partner, GENERATE, {
        input: {
          userId: `u${i % 20}`,
          mediaType: "IMAGE",
          prompt: `fallback ${i}`,
          width: 64,
          height: 64,
        },
      });
      // The error rate is the measure here, not latency: reading the state is enough.
      for (;;) {
        const { generation } = await gql(
          url,
          partner,
          `query($id: ID!) { generation(id: $id) { status attempts { number } } }`,
          { id: g.id },
        );
        if (generation.status === "SUCCEEDED" || generation.status === "FAILED") {
          return {
            status: generation.status as string,
            attempts: generation.attempts.length as number,
          };
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    });
    const failed = outcomes.filter((o) => o.status === "FAILED").length;
    const retried = outcomes.filter((o) => o.attempts > 1).length;
    console.log(
      `${"fallback (primary 30% failing)".padEnd(22)} ${n} generations: client error rate ${round((100 * failed) / n)}% (${failed} failed), ${round((100 * retried) / n)}% needed a second attempt`,
    );
  } finally {
    await stop(api);
    await stop(primary);
    await stop(fallback);
  }
}

/** A fresh Postgres database and data folder for one scenario, dropped afterwards. */
async function withDatabase(run: (url: string, dataDir: string) => Promise<void>): Promise<void> {
  const db = `gengate_bench_${randomBytes(4).toString("hex")}`;
  const admin = new PgClient({ connectionString: PG_ADMIN });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${db}"`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-bench-"));
  try {
    const u = new URL(PG_ADMIN);
    u.pathname = `/${db}`;
    await run(u.toString(), dataDir);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await admin.end();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main() {
  const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
  const base = {
    SIM_LATENCY_MS: "0",
    SIM_LATENCY_JITTER: "0",
    SIM_PROGRESS_STEPS: "1",
    POLL_MIN_MS: "10",
    POLL_MAX_MS: "100",
    RATE_LIMIT_PER_SECOND: "100000",
    RATE_LIMIT_BURST: "100000",
    TOKEN_SECRET: randomBytes(32).toString("hex"),
  };
  console.log(
    `node ${process.version}, ${os.cpus().length} cores, ${REQUESTS} generate requests per scenario`,
  );
  if (!only || only === "pg") {
    await withDatabase((url, dataDir) =>
      scenario("postgres + redis", {
        ...base,
        DATABASE_URL: url,
        REDIS_URL,
        REDIS_PREFIX: `gengate-bench-${randomBytes(3).toString("hex")}`,
        DATA_DIR: dataDir,
      }),
    );
  }
  if (!only || only === "fallback") {
    await withDatabase((url, dataDir) => fallbackScenario(base, url, dataDir));
  }
  if (!only || only === "cache") {
    await withDatabase(async (url, dataDir) => {
      const lines = await cacheScenario({
        databaseUrl: url,
        redisUrl: REDIS_URL,
        dataDir,
        requests: Number(process.env.BENCH_CACHE_REQUESTS ?? 1000),
      });
      for (const line of lines) console.log(`cache: ${line}`);
    });
  }
  if (!only || only === "enqueue") {
    await enqueueScenario({ main: MAIN, redisUrl: REDIS_URL, withDatabase });
  }
  if (!only || only === "usage") {
    await withDatabase(async (url) => {
      await usageScenario({
        databaseUrl: url,
        rows: Number(process.env.BENCH_USAGE_ROWS ?? 10_000_000),
        runs: Number(process.env.BENCH_USAGE_RUNS ?? 7),
      });
    });
  }
  if (!only || only === "embedded") {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-bench-"));
    try {
      await scenario("embedded (PGlite)", {
        ...base,
        DATA_DIR: dataDir,
        DATABASE_URL: "",
        REDIS_URL: "",
      });
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
