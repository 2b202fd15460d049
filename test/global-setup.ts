import "reflect-metadata";
import { openDatabase } from "../src/infra/data-source";
import { migrate } from "../src/infra/migrate";
import { databaseUrl, TEMPLATE_ENV, withAdmin } from "./helpers/postgres";

/** Creates one migrated template database per run; each test file clones it. */
export default async function globalSetup(): Promise<void> {
  const template = `gengate_test_${process.pid}_${Date.now().toString(36)}_tmpl`;
  await withAdmin(async (c) => {
    // Leftovers of runs that were killed before their teardown.
    const { rows } = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE 'gengate_test_%'`,
    );
    for (const { datname } of rows) {
      const age = Date.now() - parseInt(datname.split("_")[3] ?? "0", 36);
      if (age > 3600_000) await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
    }
    await c.query(`CREATE DATABASE "${template}"`);
  });
  const db = await openDatabase({ url: databaseUrl(template), dataDir: "", poolSize: 1 });
  try {
    await migrate(db.dataSource);
  } finally {
    await db.close();
  }
  process.env[TEMPLATE_ENV] = template;
}
