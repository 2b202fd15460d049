import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Batching: BATCH-priority generations wait as BATCHED rows until the collector groups them
 * (per model and provider) into a `batches` row sent to the provider's batch API. Each
 * generation of a batch gets one RUNNING attempt that names its batch.
 */
export class Batching1764320000002 implements MigrationInterface {
  name = "Batching1764320000002";

  async up(q: QueryRunner): Promise<void> {
    // status: COLLECTED (claimed, not yet accepted by the provider), SUBMITTED (the provider
    // holds it: provider_batch_id is set), COMPLETED (results fanned out), FAILED (the provider
    // refused or lost the whole batch; its generations went back to the per-request path).
    await q.query(`
      CREATE TABLE batches (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        provider text NOT NULL,
        model text NOT NULL,
        provider_model text NOT NULL,
        status text NOT NULL DEFAULT 'COLLECTED'
          CHECK (status IN ('COLLECTED', 'SUBMITTED', 'COMPLETED', 'FAILED')),
        provider_batch_id text,
        size integer NOT NULL CHECK (size > 0),
        succeeded integer NOT NULL DEFAULT 0,
        failed integer NOT NULL DEFAULT 0,
        error text,
        poll_job_id text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        submitted_at timestamptz,
        completed_at timestamptz
      )`);
    // The reconciler's look for batches nobody drives any more.
    await q.query(
      `CREATE INDEX batches_open_idx ON batches (updated_at)
         WHERE status IN ('COLLECTED', 'SUBMITTED')`,
    );
    await q.query(
      `ALTER TABLE attempts ADD COLUMN batch_id uuid REFERENCES batches(id) ON DELETE SET NULL`,
    );
    await q.query(
      `CREATE INDEX attempts_batch_idx ON attempts (batch_id) WHERE batch_id IS NOT NULL`,
    );
    // The collector: waiting rows per model, oldest first (count and age of each group).
    await q.query(
      `CREATE INDEX generations_batched_idx ON generations (model, created_at, id)
         WHERE status = 'BATCHED' AND inflight_of IS NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS generations_batched_idx`);
    await q.query(`DROP INDEX IF EXISTS attempts_batch_idx`);
    await q.query(`ALTER TABLE attempts DROP COLUMN IF EXISTS batch_id`);
    await q.query(`DROP TABLE IF EXISTS batches`);
  }
}
