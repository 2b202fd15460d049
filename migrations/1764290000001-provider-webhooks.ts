import type { MigrationInterface, QueryRunner } from "typeorm";

/** Webhooks name a provider's job: find its attempt by (provider, the key webhooks carry). */
export class ProviderWebhooks1764290000001 implements MigrationInterface {
  name = "ProviderWebhooks1764290000001";

  async up(q: QueryRunner): Promise<void> {
    // What the provider's webhooks name the job by: the job id, or a part of it (fal).
    await q.query(`ALTER TABLE attempts ADD COLUMN provider_job_key text`);
    await q.query(`UPDATE attempts SET provider_job_key = provider_job_id`);
    await q.query(
      `CREATE INDEX attempts_provider_job_key_idx ON attempts (provider, provider_job_key)
         WHERE provider_job_key IS NOT NULL`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS attempts_provider_job_key_idx`);
    await q.query(`ALTER TABLE attempts DROP COLUMN IF EXISTS provider_job_key`);
  }
}
