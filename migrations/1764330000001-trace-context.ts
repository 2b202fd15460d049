import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The trace a generation belongs to (W3C `traceparent`), so that steps started from outside
 * a trace (a provider's webhook, the reconciler) continue the generation's own.
 */
export class TraceContext1764330000001 implements MigrationInterface {
  name = "TraceContext1764330000001";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE generations ADD COLUMN trace_context jsonb`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE generations DROP COLUMN IF EXISTS trace_context`);
  }
}
