import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Output quality: the quality gate's report on the accepted result of a generation and on
 * every judged attempt (so a rejected provider output shows why), and an index for the recent
 * per-model pass rates that model selection reads.
 */
export class Quality1764330000000 implements MigrationInterface {
  name = "Quality1764330000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE generations ADD COLUMN quality jsonb`);
    await q.query(`ALTER TABLE attempts ADD COLUMN quality jsonb`);
    await q.query(`
      CREATE INDEX attempts_quality_recent_idx ON attempts (ended_at, model)
        WHERE quality IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX attempts_quality_recent_idx`);
    await q.query(`ALTER TABLE attempts DROP COLUMN quality`);
    await q.query(`ALTER TABLE generations DROP COLUMN quality`);
  }
}
