import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Budgets: what each generation holds reserved (and in which month), account-level monthly
 * limits beside the per-user ones, and stored alerts (the 80% budget warning first).
 */
export class Budgets1764320000003 implements MigrationInterface {
  name = "Budgets1764320000003";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      ALTER TABLE generations
        ADD COLUMN reserved_usd numeric(14, 6) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
        ADD COLUMN budget_period text CHECK (budget_period ~ '^[0-9]{4}-[0-9]{2}$')`);
    await q.query(`
      ALTER TABLE accounts
        ADD COLUMN monthly_limit_usd numeric(14, 6) CHECK (monthly_limit_usd >= 0),
        ADD COLUMN alert_webhook_url text`);
    await q.query(`
      ALTER TABLE budget_periods
        ADD CONSTRAINT budget_periods_amounts_check
        CHECK (limit_usd >= 0 AND spent_usd >= 0 AND reserved_usd >= 0)`);
    await q.query(`
      CREATE TABLE account_budget_periods (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        period text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
        limit_usd numeric(14, 6) NOT NULL CHECK (limit_usd >= 0),
        spent_usd numeric(14, 6) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
        reserved_usd numeric(14, 6) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
        warned_at timestamptz
      )`);
    await q.query(
      `CREATE UNIQUE INDEX account_budget_periods_key ON account_budget_periods (account_id, period)`,
    );
    await q.query(`
      CREATE TABLE alerts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid REFERENCES accounts(id) ON DELETE CASCADE,
        user_id text,
        kind text NOT NULL,
        severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
        message text NOT NULL,
        data jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
      )`);
    await q.query(`CREATE INDEX alerts_created_idx ON alerts (created_at, id)`);
    await q.query(`CREATE INDEX alerts_account_created_idx ON alerts (account_id, created_at, id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS alerts`);
    await q.query(`DROP TABLE IF EXISTS account_budget_periods`);
    await q.query(
      `ALTER TABLE budget_periods DROP CONSTRAINT IF EXISTS budget_periods_amounts_check`,
    );
    await q.query(
      `ALTER TABLE accounts DROP COLUMN IF EXISTS alert_webhook_url, DROP COLUMN IF EXISTS monthly_limit_usd`,
    );
    await q.query(
      `ALTER TABLE generations DROP COLUMN IF EXISTS budget_period, DROP COLUMN IF EXISTS reserved_usd`,
    );
  }
}
