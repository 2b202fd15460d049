import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { gql, partner } from "../../helpers/graphql";
import {
  assertBuilt,
  createAdminKey,
  runGengate,
  spawnGengate,
  stopAllGengates,
  type GengateProcess,
  type GengateRole,
} from "../../helpers/process";
import { startRedisServer, type RedisServer } from "../../helpers/redis-server";
import { startPrivatePostgres, type PrivatePostgres } from "./private-services";

export const TOKEN_SECRET = "faults-secret-faults-secret-faults-0123";
const TEMPLATE_DB = "gengate_faults_tmpl";
/** How long a process may take to be ready: a busy CI machine starts node slowly. */
export const SPAWN_TIMEOUT_MS = 90_000;

/**
 * One fault-suite file's world: a private Postgres cluster and Redis server, and the built
 * program migrated into a template database. Each scenario is a `Deployment`: a database
 * cloned from the template, a Redis prefix and a data folder of its own, and the gengate
 * processes it starts.
 */
export interface FaultStack {
  pg: PrivatePostgres;
  redis: RedisServer;
  deployment(name: string): Promise<Deployment>;
  /** Stops every process, server and folder this stack started; safe to call twice. */
  destroy(): Promise<void>;
}

export interface Deployment {
  name: string;
  database: string;
  databaseUrl: string;
  redisPrefix: string;
  dataDir: string;
  /** Environment for a gengate child of this deployment. */
  env(overrides?: Record<string, string>): Record<string, string>;
  spawn(role: GengateRole, overrides?: Record<string, string>): Promise<GengateProcess>;
  /** A new partner account's key, through `url`'s api. */
  partnerKey(url: string): Promise<string>;
  /** The ADMIN key of the operators' account. */
  adminKey: string;
  /** A query on this deployment's database. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

/** What every child of the suite runs with: short periods so that recovery fits in a test. */
export function baseEnv(): Record<string, string> {
  return {
    TOKEN_SECRET,
    LOG_LEVEL: "info",
    PORT: "0",
    HOST: "127.0.0.1",
    SIM_LATENCY_MS: "400",
    SIM_LATENCY_JITTER: "0",
    SIM_PROGRESS_STEPS: "2",
    POLL_MIN_MS: "50",
    POLL_MAX_MS: "250",
    RECONCILE_INTERVAL_SECONDS: "0.5",
    RECONCILE_STALE_SECONDS: "2",
    QUEUE_LOCK_MS: "2000",
    RATE_LIMIT_PER_SECOND: "10000",
    RATE_LIMIT_BURST: "10000",
    SHUTDOWN_TIMEOUT_SECONDS: "10",
    METRICS_PORT: "off",
    DB_POOL_SIZE: "5",
    ANOMALY_DETECTION: "false",
  };
}

export async function startFaultStack(): Promise<FaultStack> {
  assertBuilt();
  const pg = await startPrivatePostgres();
  let redis: RedisServer | undefined;
  let adminKey = "";
  const dirs: string[] = [];
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    await stopAllGengates();
    await Promise.allSettled([pg.destroy(), redis?.stop()]);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  };
  try {
    redis = await startRedisServer();
    await pg.query(`CREATE DATABASE ${TEMPLATE_DB}`);
    const migrated = await runGengate(["migrate"], {
      ...baseEnv(),
      DATABASE_URL: pg.url(TEMPLATE_DB),
      LOG_LEVEL: "warn",
    });
    if (migrated.code !== 0) {
      throw new Error(
        `migrate exited with ${migrated.code}:\n${migrated.stdout}\n${migrated.stderr}`,
      );
    }
    // In the template, so that every deployment cloned from it has it.
    adminKey = await createAdminKey({ ...baseEnv(), DATABASE_URL: pg.url(TEMPLATE_DB) });
  } catch (err) {
    await destroy();
    throw err;
  }
  const r = redis;

  const deployment = async (name: string): Promise<Deployment> => {
    const suffix = randomBytes(3).toString("hex");
    const database = `faults_${name.replace(/\W+/g, "_")}_${suffix}`;
    await pg.query(`CREATE DATABASE "${database}" TEMPLATE ${TEMPLATE_DB}`);
    const databaseUrl = pg.url(database);
    const redisPrefix = `faults-${name}-${suffix}`;
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `gengate-faults-${name}-`));
    dirs.push(dataDir);
    const env = (overrides: Record<string, string> = {}) => ({
      ...baseEnv(),
      DATABASE_URL: databaseUrl,
      REDIS_URL: r.url,
      REDIS_PREFIX: redisPrefix,
      DATA_DIR: dataDir,
      ...overrides,
    });
    return {
      name,
      database,
      databaseUrl,
      redisPrefix,
      dataDir,
      env,
      adminKey,
      spawn: (role, overrides = {}) =>
        spawnGengate(role, env(overrides), { readyTimeoutMs: SPAWN_TIMEOUT_MS }),
      partnerKey: async (url) => (await partner({ url }, adminKey, "faults")).key,
      query: (sql, params) => pg.query(sql, params, database),
    };
  };

  return { pg, redis: r, deployment, destroy };
}

/**
 * Changes a model's provider timeout through the API (`upsertModel` with its stored
 * definition): every process reloads the catalog at once, and logs it.
 */
export async function setModelTimeout(
  apiUrl: string,
  adminKey: string,
  model: string,
  timeoutSeconds: number,
): Promise<void> {
  const read = await gql(
    apiUrl,
    `{ models(includeUnavailable: true) {
        name mediaType quality aliases alternates deprecated typicalSeconds timeoutSeconds
        pricing { baseCostUsd batchDiscount perMegapixel perSecond referenceMegapixels }
        limits { minSize maxSize defaultWidth defaultHeight minDurationSeconds maxDurationSeconds defaultDurationSeconds }
        routes { provider model priceOverride baseCostUsd batchDiscount }
      } }`,
    {},
    adminKey,
  );
  const m = (read.data?.models as Array<Record<string, any>> | undefined)?.find(
    (x) => x.name === model,
  );
  if (!m) throw new Error(`no model ${model}: ${JSON.stringify(read.errors)}`);
  const input = {
    ...m,
    timeoutSeconds,
    // A model's typical duration may not exceed its timeout.
    typicalSeconds: Math.min(m.typicalSeconds as number, timeoutSeconds),
    routes: (m.routes as Array<Record<string, any>>).map((r) =>
      r.priceOverride
        ? {
            provider: r.provider,
            model: r.model,
            baseCostUsd: r.baseCostUsd,
            batchDiscount: r.batchDiscount,
          }
        : { provider: r.provider, model: r.model },
    ),
  };
  const res = await gql(
    apiUrl,
    `mutation($input: ModelInput!) { upsertModel(input: $input) { name timeoutSeconds } }`,
    { input },
    adminKey,
  );
  if (res.data?.upsertModel?.timeoutSeconds !== timeoutSeconds) {
    throw new Error(`upsertModel failed: ${JSON.stringify(res.errors)}`);
  }
}
