import type { MigrationInterface, QueryRunner } from "typeorm";

export class Initial1764280000000 implements MigrationInterface {
  name = "Initial1764280000000";

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE accounts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        role text NOT NULL CHECK (role IN ('ADMIN', 'PARTNER')),
        label text,
        key_hash text NOT NULL,
        key_prefix text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`);
    await q.query(`CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (key_hash)`);
    await q.query(`CREATE INDEX api_keys_account_idx ON api_keys (account_id)`);

    await q.query(`
      CREATE TABLE end_users (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        user_id text NOT NULL,
        tier text NOT NULL DEFAULT 'FREE' CHECK (tier IN ('FREE', 'PRO', 'ENTERPRISE')),
        monthly_limit_usd numeric(14, 6) CHECK (monthly_limit_usd >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      `CREATE UNIQUE INDEX end_users_account_user_key ON end_users (account_id, user_id)`,
    );

    await q.query(`
      CREATE TABLE generations (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        end_user_id uuid NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
        user_id text NOT NULL,
        status text NOT NULL
          CHECK (status IN ('QUEUED', 'BATCHED', 'PROCESSING', 'SUCCEEDED', 'FAILED', 'CANCELED')),
        progress real NOT NULL DEFAULT 0,
        media_type text NOT NULL CHECK (media_type IN ('IMAGE', 'VIDEO', 'AUDIO')),
        prompt text NOT NULL,
        negative_prompt text,
        model text NOT NULL,
        provider text,
        seed integer NOT NULL,
        priority text NOT NULL CHECK (priority IN ('INTERACTIVE', 'STANDARD', 'BATCH')),
        params jsonb NOT NULL DEFAULT '{}',
        outputs jsonb NOT NULL DEFAULT '[]',
        estimated_cost_usd numeric(14, 6) NOT NULL,
        cost_usd numeric(14, 6),
        estimated_seconds real,
        cached boolean NOT NULL DEFAULT false,
        error jsonb,
        idempotency_key text,
        request_hash text NOT NULL,
        version integer NOT NULL DEFAULT 0,
        -- Milliseconds, so that a creation time survives the round trip through a JS cursor.
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        completed_at timestamptz
      )`);
    // Listing: newest first per account, optionally per end user; (created_at, id) is the cursor.
    await q.query(
      `CREATE INDEX generations_account_created_idx ON generations (account_id, created_at, id)`,
    );
    await q.query(
      `CREATE INDEX generations_account_user_created_idx ON generations (account_id, user_id, created_at, id)`,
    );
    await q.query(
      `CREATE UNIQUE INDEX generations_account_idempotency_key ON generations (account_id, idempotency_key)
         WHERE idempotency_key IS NOT NULL`,
    );
    // The reconciler scans only unfinished rows; a partial index keeps that scan small forever.
    await q.query(
      `CREATE INDEX generations_unfinished_idx ON generations (status, updated_at)
         WHERE status IN ('QUEUED', 'BATCHED', 'PROCESSING')`,
    );
    // Recent observed durations per model, for estimatedSeconds.
    await q.query(
      `CREATE INDEX generations_model_completed_idx ON generations (model, completed_at)
         WHERE status = 'SUCCEEDED' AND cached = false`,
    );

    await q.query(`
      CREATE TABLE attempts (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        generation_id uuid NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        number integer NOT NULL,
        provider text NOT NULL,
        model text NOT NULL,
        status text NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED')),
        provider_job_id text,
        poll_job_id text,
        error text,
        error_code text,
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        duration_ms integer,
        cost_usd numeric(14, 6)
      )`);
    await q.query(
      `CREATE UNIQUE INDEX attempts_generation_number_key ON attempts (generation_id, number)`,
    );

    await q.query(`
      CREATE TABLE budget_periods (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        end_user_id uuid NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
        period text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
        limit_usd numeric(14, 6) NOT NULL,
        spent_usd numeric(14, 6) NOT NULL DEFAULT 0,
        reserved_usd numeric(14, 6) NOT NULL DEFAULT 0,
        warned_at timestamptz
      )`);
    await q.query(
      `CREATE UNIQUE INDEX budget_periods_user_period_key ON budget_periods (end_user_id, period)`,
    );

    await q.query(`
      CREATE TABLE usage_records (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        account_id uuid NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        end_user_id uuid NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
        user_id text NOT NULL,
        generation_id uuid NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
        model text NOT NULL,
        provider text,
        media_type text NOT NULL,
        cost_usd numeric(14, 6) NOT NULL,
        cached boolean NOT NULL DEFAULT false,
        saved_usd numeric(14, 6) NOT NULL DEFAULT 0,
        duration_ms integer,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(
      `CREATE UNIQUE INDEX usage_records_generation_key ON usage_records (generation_id)`,
    );
    await q.query(
      `CREATE INDEX usage_records_account_created_idx ON usage_records (account_id, created_at)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of [
      "usage_records",
      "budget_periods",
      "attempts",
      "generations",
      "end_users",
      "api_keys",
      "accounts",
    ]) {
      await q.query(`DROP TABLE IF EXISTS ${table}`);
    }
  }
}
