import "reflect-metadata";
import fs from "node:fs";
import path from "node:path";
import { DataSource } from "typeorm";
import { ENTITIES } from "../entities";
import { lockDataDir } from "./data-dir-lock";
import { PreparingClient } from "./prepared-statements";
import { Initial1764280000000 } from "../../migrations/1764280000000-initial";
import { Callbacks1764290000000 } from "../../migrations/1764290000000-callbacks";
import { ProviderWebhooks1764290000001 } from "../../migrations/1764290000001-provider-webhooks";
import { Cache1764300000000 } from "../../migrations/1764300000000-cache";
import { ModelCatalog1764320000000 } from "../../migrations/1764320000000-model-catalog";
import { Budgets1764320000003 } from "../../migrations/1764320000003-budgets";
import { TraceContext1764330000001 } from "../../migrations/1764330000001-trace-context";
import { Batching1764320000002 } from "../../migrations/1764320000002-batching";
import { UsageRollup1764320000001 } from "../../migrations/1764320000001-usage-rollup";
import { Quality1764330000000 } from "../../migrations/1764330000000-quality";
import { OperatorStats1764340000000 } from "../../migrations/1764340000000-operator-stats";
import { UsageShards1764360000000 } from "../../migrations/1764360000000-usage-shards";
import { SemanticIndexParams1764350000000 } from "../../migrations/1764350000000-semantic-index-params";

export const MIGRATIONS = [
  Initial1764280000000,
  Callbacks1764290000000,
  ProviderWebhooks1764290000001,
  Cache1764300000000,
  ModelCatalog1764320000000,
  UsageRollup1764320000001,
  Batching1764320000002,
  Budgets1764320000003,
  Quality1764330000000,
  TraceContext1764330000001,
  OperatorStats1764340000000,
  SemanticIndexParams1764350000000,
  UsageShards1764360000000,
];

export interface DatabaseOptions {
  /** Postgres URL; without it the embedded PGlite database in `dataDir` is used. */
  url?: string;
  dataDir: string;
  poolSize: number;
  /** Send parameterised statements as named prepared statements (see PreparingClient). */
  preparedStatements?: boolean;
}

export interface Database {
  dataSource: DataSource;
  /** True on PGlite: one connection, queries run one at a time. */
  embedded: boolean;
  close(): Promise<void>;
}

/**
 * Session settings of every connection. An HNSW scan with a filter (the semantic cache's scope
 * and expiry) may return fewer rows than asked; an iterative scan keeps going until the LIMIT is
 * met, in distance order. Set once per connection rather than per query, so that a lookup is
 * one statement instead of a transaction of four round trips. Only HNSW scans read it.
 */
const SESSION_SETTINGS = { "hnsw.iterative_scan": "strict_order" } as const;

/** The URL with the session settings added to its `options` (kept with any it already has). */
function withSessionSettings(url: string): string {
  const u = new URL(url);
  const settings = Object.entries(SESSION_SETTINGS).map(([k, v]) => `-c ${k}=${v}`);
  u.searchParams.set(
    "options",
    [u.searchParams.get("options"), ...settings].filter(Boolean).join(" "),
  );
  return u.toString();
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  if (opts.url) {
    const dataSource = new DataSource({
      type: "postgres",
      url: withSessionSettings(opts.url),
      entities: ENTITIES,
      migrations: MIGRATIONS,
      synchronize: false,
      uuidExtension: "pgcrypto",
      extra: {
        max: opts.poolSize,
        idleTimeoutMillis: 30_000,
        ...(opts.preparedStatements === false ? {} : { Client: PreparingClient }),
      },
    });
    await dataSource.initialize();
    return { dataSource, embedded: false, close: () => dataSource.destroy() };
  }
  return openEmbedded(opts.dataDir);
}

async function openEmbedded(dataDir: string): Promise<Database> {
  const dir = path.resolve(dataDir, "pgdata");
  fs.mkdirSync(dir, { recursive: true });
  const unlock = lockDataDir(dir);
  // PGlite is ESM-only behind its conditional exports; a dynamic import keeps this file CommonJS.
  const { PGlite } = await import("@electric-sql/pglite");
  const { createPgConfig } = await import("@electric-sql/pglite/node-postgres");
  const { vector } = await import("@electric-sql/pglite-pgvector");
  const pglite = await PGlite.create(dir, { extensions: { vector } });
  const pgConfig = createPgConfig(pglite);
  const dataSource = new DataSource({
    type: "postgres",
    entities: ENTITIES,
    migrations: MIGRATIONS,
    synchronize: false,
    uuidExtension: "pgcrypto",
    // PGlite has exactly one connection: the pool must never open a second or drop the first.
    extra: { connection: pgConfig.connection, max: 1, idleTimeoutMillis: 0 },
  });
  try {
    await dataSource.initialize();
    // One connection for the life of the process: a session setting stays.
    for (const [k, v] of Object.entries(SESSION_SETTINGS))
      await dataSource.query(`SET ${k} = ${v}`);
  } catch (err) {
    unlock();
    throw err;
  }
  return {
    dataSource,
    embedded: true,
    close: async () => {
      await dataSource.destroy();
      await pglite.close();
      unlock();
    },
  };
}
