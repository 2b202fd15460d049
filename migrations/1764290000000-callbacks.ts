import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * User callbacks: a signing secret per account and a row per callback message.
 *
 * `accounts.callback_secret` is left NULL for existing accounts and created by the service on
 * first use (`whsec_` + 24 random bytes from node:crypto). SQL cannot make a good one here:
 * `random()` is not a cryptographic generator, and `gen_random_bytes` needs pgcrypto, which
 * the embedded PGlite database does not load by default.
 */
export class Callbacks1764290000000 implements MigrationInterface {
  name = "Callbacks1764290000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE accounts ADD COLUMN callback_secret text`);
    await q.query(`
      CREATE TABLE callback_deliveries (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        generation_id uuid NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        url text NOT NULL,
        event text NOT NULL CHECK (event IN ('SUCCEEDED', 'FAILED', 'CANCELED')),
        attempt integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
        status text NOT NULL DEFAULT 'PENDING'
          CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED', 'REFUSED')),
        http_status integer,
        error text,
        message_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        next_attempt_at timestamptz,
        delivered_at timestamptz
      )`);
    // One message per generation and event: a lifecycle step that runs twice enqueues once.
    // Also serves "the deliveries of a generation".
    await q.query(
      `CREATE UNIQUE INDEX callback_deliveries_generation_event_key
         ON callback_deliveries (generation_id, event)`,
    );
    // The reconciler looks for pending deliveries nothing is driving; delivered, failed and
    // refused rows pile up forever and must not slow that scan.
    await q.query(
      `CREATE INDEX callback_deliveries_due_idx ON callback_deliveries (next_attempt_at)
         WHERE status = 'PENDING'`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS callback_deliveries`);
    await q.query(`ALTER TABLE accounts DROP COLUMN IF EXISTS callback_secret`);
  }
}
