import { partner } from "./graphql";
import { query } from "./postgres";
import { createAdminKey, spawnGengate, type GengateProcess, type GengateRole } from "./process";
import { createTestEnv, type TestEnv } from "./test-app";

/**
 * A fresh database and Redis prefix (see createTestEnv) for built gengate processes, with the
 * operators' ADMIN key on it: where an end-to-end test of a deployment starts.
 */
export interface ProcessTestEnv extends TestEnv {
  adminKey: string;
  /** `gengate <role>` on this env, logging at info: tests wait on its log lines. */
  spawn(role: GengateRole, overrides?: Record<string, string>): Promise<GengateProcess>;
  /** A new partner account's key, through `api`. */
  partnerKey(api: GengateProcess, name?: string): Promise<string>;
  /** One query on this env's database. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
}

export async function createProcessTestEnv(): Promise<ProcessTestEnv> {
  const env = await createTestEnv();
  let adminKey: string;
  try {
    adminKey = await createAdminKey(env.env());
  } catch (err) {
    await env.cleanup();
    throw err;
  }
  return {
    ...env,
    adminKey,
    spawn: (role, overrides = {}) =>
      spawnGengate(role, env.env({ LOG_LEVEL: "info", ...overrides })),
    partnerKey: async (api, name = "e2e") => (await partner(api, adminKey, name)).key,
    query: (sql, params) => query(env.databaseUrl, sql, params),
  };
}

/** Each generation SUCCEEDED, with one SUCCEEDED attempt and one usage row: charged once. */
export async function expectSucceededOnce(env: ProcessTestEnv, ids: string[]): Promise<void> {
  const rows = await env.query<{
    id: string;
    status: string;
    usage_rows: number;
    succeeded_attempts: number;
  }>(
    `SELECT g.id, g.status,
            (SELECT count(*)::int FROM usage_records u WHERE u.generation_id = g.id) AS usage_rows,
            (SELECT count(*)::int FROM attempts a
              WHERE a.generation_id = g.id AND a.status = 'SUCCEEDED') AS succeeded_attempts
       FROM generations g WHERE g.id = ANY($1) ORDER BY g.id`,
    [ids],
  );
  expect(rows).toHaveLength(ids.length);
  for (const row of rows) {
    expect(row).toEqual({ id: row.id, status: "SUCCEEDED", usage_rows: 1, succeeded_attempts: 1 });
  }
}
