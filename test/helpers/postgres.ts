import { randomBytes } from "node:crypto";
import { Client } from "pg";

/** The machine's Postgres; CI and developers run one on 127.0.0.1:5432 with trust auth. */
export const PG_ADMIN_URL =
  process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const TEMPLATE_ENV = "GENGATE_TEST_TEMPLATE";

export function databaseUrl(name: string): string {
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs `fn` on a connection of its own to the database at `url`, closed afterwards. */
export async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export function withAdmin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  return withClient(PG_ADMIN_URL, fn);
}

/** One query on the database at `url`: its rows. */
export function query<T = Record<string, unknown>>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  return withClient(url, async (c) => (await c.query(sql, params)).rows as T[]);
}

/** A fresh database cloned from the migrated template: isolated and fast. */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const template = process.env[TEMPLATE_ENV];
  if (!template)
    throw new Error(`${TEMPLATE_ENV} is not set: run tests through jest (global setup)`);
  const name = `${template.replace(/_tmpl$/, "")}_${randomBytes(4).toString("hex")}`;
  await withAdmin((c) => c.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  return {
    url: databaseUrl(name),
    drop: () =>
      withAdmin((c) => c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(
        () => undefined,
      ),
  };
}
