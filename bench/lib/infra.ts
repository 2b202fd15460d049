/**
 * Postgres and Redis for a scenario: a fresh database (dropped afterwards), a Redis key prefix
 * of its own (its keys deleted afterwards), a data folder for stored outputs, and the
 * environment every gengate process of the scenario shares.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Redis from "ioredis";
import { Client as PgClient } from "pg";
import type { BenchContext } from "./scenario";

export interface Infra {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  dataDir: string;
  tokenSecret: string;
  /** The environment of every gengate process of the scenario: same database, Redis, secret. */
  env: Record<string, string>;
}

/**
 * Settings every scenario starts from: a zero-latency simulated provider with one progress
 * step, short polls, and no per-credential rate limit or WebSocket cap (the bench is one
 * client standing in for many). Scenarios override what they measure.
 */
export const BENCH_DEFAULTS: Record<string, string> = {
  SIM_LATENCY_MS: "0",
  SIM_LATENCY_JITTER: "0",
  SIM_PROGRESS_STEPS: "1",
  POLL_MIN_MS: "10",
  POLL_MAX_MS: "100",
  RATE_LIMIT_PER_SECOND: "100000",
  RATE_LIMIT_BURST: "100000",
  // One bench client stands in for thousands of users on one key: lift the per-key WebSocket
  // caps (the fan-out scenario opens 5,000 connections).
  WS_MAX_CONNECTIONS: "20000",
  WS_MAX_CONNECTIONS_PER_KEY: "20000",
  WS_MAX_SUBSCRIPTIONS_PER_KEY: "100000",
  NODE_ENV: "production",
  PLAYGROUND: "false",
};

export async function withInfra<T>(ctx: BenchContext, run: (infra: Infra) => Promise<T>) {
  const db = `gengate_bench_${randomBytes(4).toString("hex")}`;
  const admin = new PgClient({ connectionString: ctx.pgAdminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${db}"`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-bench-"));
  const u = new URL(ctx.pgAdminUrl);
  u.pathname = `/${db}`;
  const redisPrefix = `gengate-bench-${randomBytes(3).toString("hex")}`;
  const tokenSecret = randomBytes(32).toString("hex");
  const infra: Infra = {
    databaseUrl: u.toString(),
    redisUrl: ctx.redisUrl,
    redisPrefix,
    dataDir,
    tokenSecret,
    env: {
      ...BENCH_DEFAULTS,
      DATABASE_URL: u.toString(),
      REDIS_URL: ctx.redisUrl,
      REDIS_PREFIX: redisPrefix,
      DATA_DIR: dataDir,
      TOKEN_SECRET: tokenSecret,
    },
  };
  try {
    return await run(infra);
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await admin.end();
    fs.rmSync(dataDir, { recursive: true, force: true });
    await deleteKeys(ctx.redisUrl, `${redisPrefix}*`);
  }
}

/** Deletes the keys matching `pattern` (SCAN, never KEYS). */
export async function deleteKeys(redisUrl: string, pattern: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true });
  await redis.connect();
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
