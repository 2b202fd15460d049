import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The operators' dashboard reads the last hour or day of finished generations across every
 * account by completion time (usage rows by creation time already have
 * usage_records_created_idx).
 */
export class OperatorStats1764340000000 implements MigrationInterface {
  name = "OperatorStats1764340000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(
      `CREATE INDEX generations_completed_idx ON generations (completed_at) WHERE completed_at IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS generations_completed_idx`);
  }
}
