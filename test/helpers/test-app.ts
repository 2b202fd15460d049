import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createApp, type App } from "../../src/app/app";
import { createLogger, type Logger } from "../../src/common/logger";
import { loadConfig } from "../../src/config";
import { buildGraphQLSchema } from "../../src/graphql/schema";
import { startHttpServer, type HttpServer } from "../../src/http/server";
import { createTestDatabase } from "./postgres";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "./redis";

export const TEST_SECRET = "test-secret-test-secret-test-secret-0123";

export interface TestEnv {
  databaseUrl: string;
  redisPrefix: string;
  dataDir: string;
  /** Environment for a child `gengate` process sharing this test's database and Redis. */
  env(overrides?: Record<string, string>): Record<string, string>;
  cleanup(): Promise<void>;
}

/** A fresh database and Redis prefix for one test file. */
export async function createTestEnv(): Promise<TestEnv> {
  const db = await createTestDatabase();
  const redisPrefix = uniquePrefix();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-test-"));
  return {
    databaseUrl: db.url,
    redisPrefix,
    dataDir,
    env: (overrides = {}) => ({
      DATABASE_URL: db.url,
      REDIS_URL: TEST_REDIS_URL,
      REDIS_PREFIX: redisPrefix,
      DATA_DIR: dataDir,
      TOKEN_SECRET: TEST_SECRET,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
      PORT: "0",
      HOST: "127.0.0.1",
      SIM_LATENCY_MS: "300",
      SIM_LATENCY_JITTER: "0",
      SIM_PROGRESS_STEPS: "3",
      POLL_MIN_MS: "20",
      POLL_MAX_MS: "200",
      RECONCILE_INTERVAL_SECONDS: "0.5",
      RECONCILE_STALE_SECONDS: "2",
      QUEUE_LOCK_MS: "2000",
      // Suites send bursts through one key; the rate-limit tests set their own.
      RATE_LIMIT_PER_SECOND: "10000",
      RATE_LIMIT_BURST: "10000",
      SHUTDOWN_TIMEOUT_SECONDS: "10",
      // Several workers share this machine: each takes a free port for its metrics.
      METRICS_PORT: "0",
      ...overrides,
    }),
    cleanup: async () => {
      await db.drop();
      await deletePrefix(redisPrefix);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface TestServer {
  app: App;
  http: HttpServer;
  url: string;
  stop(): Promise<void>;
}

/** gengate in this process (api and/or worker) on a free port, on the given test env. */
export async function startTestServer(
  env: TestEnv,
  opts: {
    api?: boolean;
    worker?: boolean;
    overrides?: Record<string, string>;
    /** Where the app logs (a test capturing its lines); else LOG_LEVEL to stdout. */
    logger?: Logger;
  } = {},
): Promise<TestServer> {
  const vars = env.env(opts.overrides);
  const config = loadConfig(vars);
  const logger = opts.logger ?? createLogger(config.LOG_LEVEL);
  const app = await createApp(
    config,
    { api: opts.api ?? true, worker: opts.worker ?? true },
    logger,
  );
  const http = await startHttpServer(app, await buildGraphQLSchema());
  const url = `http://127.0.0.1:${http.port}`;
  return {
    app,
    http,
    url,
    stop: async () => {
      await http.close();
      await app.stop();
    },
  };
}

/** A new ADMIN key for the operators' account of this server's database. */
export async function adminKey(server: TestServer): Promise<string> {
  return (await server.app.services.auth.issueOperatorKey("ADMIN", "test")).key;
}

/** A new partner account through the server's API, beside `adminKey` for in-process tests. */
export { partner } from "./graphql";
