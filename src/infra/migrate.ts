import { MigrationExecutor, type DataSource } from "typeorm";

// Any constant works; it only has to be the same in every gengate process.
const MIGRATION_LOCK = 74_656_001;

/**
 * Applies pending migrations. An advisory lock makes processes that start together take
 * turns; the migrations run on the connection that holds the lock, so a pool of one
 * (PGlite, or the CLI) is enough.
 */
export async function migrate(dataSource: DataSource): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    try {
      const executor = new MigrationExecutor(dataSource, runner);
      executor.transaction = "each";
      const applied = await executor.executePendingMigrations();
      return applied.map((m) => m.name);
    } finally {
      await runner.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]);
    }
  } finally {
    await runner.release();
  }
}
