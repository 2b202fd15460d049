import type { DataSource, EntityManager } from "typeorm";
import {
  AttemptEntity,
  BatchEntity,
  GenerationEntity,
  type GenerationParams,
  type MediaType,
  type Priority,
} from "../entities";
import { toSnapshot, type GenerationSnapshot } from "./generation.events";

/** The BATCHED generations of one model: how many, and how long the oldest has waited. */
export interface WaitingGroup {
  model: string;
  count: number;
  oldestAgeSeconds: number;
}

/** Where a claimed group goes: a provider's batch API, or back to the per-request queue. */
export type ClaimTarget =
  { kind: "batch"; provider: string; providerModel: string } | { kind: "requests" };

export interface ClaimRule {
  /** Claim at most this many. */
  limit: number;
  /** Claim only if at least `minCount` rows are free, or the oldest has waited `timeoutSeconds`. */
  minCount: number;
  timeoutSeconds: number;
}

export type Claimed =
  | { kind: "batch"; batchId: string; generations: GenerationSnapshot[] }
  | { kind: "requests"; generations: GenerationSnapshot[] };

/** One generation of a batch, with what its provider request and its result need. */
export interface BatchMember {
  generationId: string;
  attempt: number;
  /** The attempt's status: RUNNING while its result is awaited. */
  attemptStatus: string;
  generationStatus: string;
  model: string;
  mediaType: MediaType;
  prompt: string;
  negativePrompt: string | null;
  seed: number;
  priority: Priority;
  params: GenerationParams;
}

/**
 * Postgres reads and writes of batching. Claiming takes rows with `FOR UPDATE SKIP LOCKED`, so
 * collectors in several workers at once never put one generation in two batches, and moves
 * them out of BATCHED in the same transaction.
 */
export class BatchRepository {
  constructor(private readonly db: DataSource) {}

  /** Waiting rows per model (served by the partial index on BATCHED rows). */
  async waitingGroups(): Promise<WaitingGroup[]> {
    const rows = (await this.db.query(
      `SELECT model, count(*)::int AS count,
              EXTRACT(EPOCH FROM (now() - min(created_at)))::float8 AS age
         FROM generations
        WHERE status = 'BATCHED' AND inflight_of IS NULL
        GROUP BY model`,
    )) as Array<{ model: string; count: number; age: number }>;
    return rows.map((r) => ({
      model: r.model,
      count: r.count,
      oldestAgeSeconds: Number(r.age),
    }));
  }

  /**
   * Claims up to `rule.limit` BATCHED generations of a model, oldest first, when the rule says
   * the group is due. For a batch: one batch row, one RUNNING attempt per generation naming it,
   * generations PROCESSING. For plain requests: generations back to QUEUED. Null when nothing
   * was due (or another collector holds the rows).
   */
  async claim(model: string, rule: ClaimRule, target: ClaimTarget): Promise<Claimed | null> {
    return this.db.transaction(async (m) => {
      const rows = (await m.query(
        `SELECT id, created_at <= now() - make_interval(secs => $3) AS overdue
           FROM generations
          WHERE status = 'BATCHED' AND inflight_of IS NULL AND model = $1
          ORDER BY created_at, id
          LIMIT $2
          FOR UPDATE SKIP LOCKED`,
        [model, rule.limit, rule.timeoutSeconds],
      )) as Array<{ id: string; overdue: boolean }>;
      if (rows.length === 0) return null;
      if (rows.length < rule.minCount && !rows[0]!.overdue) return null;
      const ids = rows.map((r) => r.id);
      if (target.kind === "requests") {
        await m.query(
          `UPDATE generations SET status = 'QUEUED', updated_at = now(), version = version + 1
            WHERE id = ANY($1::uuid[])`,
          [ids],
        );
        return { kind: "requests", generations: await this.snapshots(m, ids) };
      }
      const [batch] = (await m.query(
        `INSERT INTO batches (provider, model, provider_model, size)
         VALUES ($1, $2, $3, $4) RETURNING id`,
        [target.provider, model, target.providerModel, ids.length],
      )) as Array<{ id: string }>;
      await m.query(
        `INSERT INTO attempts (generation_id, number, provider, model, status, started_at, batch_id)
         SELECT g.id,
                COALESCE((SELECT max(a.number) FROM attempts a WHERE a.generation_id = g.id), 0) + 1,
                $2, g.model, 'RUNNING', now(), $3
           FROM generations g WHERE g.id = ANY($1::uuid[])`,
        [ids, target.provider, batch!.id],
      );
      await m.query(
        `UPDATE generations
            SET status = 'PROCESSING', provider = $2, started_at = COALESCE(started_at, now()),
                updated_at = now(), version = version + 1
          WHERE id = ANY($1::uuid[])`,
        [ids, target.provider],
      );
      return {
        kind: "batch",
        batchId: batch!.id,
        generations: await this.snapshots(m, ids),
      };
    });
  }

  async find(id: string): Promise<BatchEntity | null> {
    return this.db.getRepository(BatchEntity).findOneBy({ id });
  }

  /** The generations of a batch, in the order they were claimed. */
  async members(batchId: string): Promise<BatchMember[]> {
    const rows = (await this.db.query(
      `SELECT g.id, a.number, a.status AS attempt_status, g.status, a.model, g.media_type,
              g.prompt, g.negative_prompt, g.seed, g.priority, g.params
         FROM attempts a JOIN generations g ON g.id = a.generation_id
        WHERE a.batch_id = $1
        ORDER BY g.created_at, g.id`,
      [batchId],
    )) as Array<{
      id: string;
      number: number;
      attempt_status: string;
      status: string;
      model: string;
      media_type: MediaType;
      prompt: string;
      negative_prompt: string | null;
      seed: number;
      priority: Priority;
      params: GenerationParams;
    }>;
    return rows.map((r) => ({
      generationId: r.id,
      attempt: r.number,
      attemptStatus: r.attempt_status,
      generationStatus: r.status,
      model: r.model,
      mediaType: r.media_type,
      prompt: r.prompt,
      negativePrompt: r.negative_prompt,
      seed: r.seed,
      priority: r.priority,
      params: r.params,
    }));
  }

  /**
   * Records the provider's id for the batch and the status check that follows. Only the first
   * caller records: false when the batch was no longer COLLECTED.
   */
  async recordSubmitted(id: string, providerBatchId: string, pollJobId: string): Promise<boolean> {
    const [, n] = (await this.db.query(
      `UPDATE batches
          SET status = 'SUBMITTED', provider_batch_id = $2, poll_job_id = $3,
              submitted_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'COLLECTED'`,
      [id, providerBatchId, pollJobId],
    )) as [unknown, number];
    return n > 0;
  }

  /** Records the status check now driving the batch; touching the row says it is alive. */
  async notePoll(id: string, pollJobId: string | null): Promise<void> {
    await this.db.query(
      `UPDATE batches SET poll_job_id = COALESCE($2, poll_job_id), updated_at = now() WHERE id = $1`,
      [id, pollJobId],
    );
  }

  async finish(
    id: string,
    outcome: { status: "COMPLETED" | "FAILED"; succeeded: number; failed: number; error?: string },
  ): Promise<void> {
    await this.db.query(
      `UPDATE batches
          SET status = $2, succeeded = $3, failed = $4, error = $5, completed_at = now(),
              updated_at = now()
        WHERE id = $1 AND status IN ('COLLECTED', 'SUBMITTED')`,
      [id, outcome.status, outcome.succeeded, outcome.failed, outcome.error ?? null],
    );
  }

  /** Open batches untouched for `staleSeconds`: their submit or poll chain may be lost. */
  async findStale(staleSeconds: number, limit = 100): Promise<BatchEntity[]> {
    return this.db
      .getRepository(BatchEntity)
      .createQueryBuilder("b")
      .where("b.status IN ('COLLECTED', 'SUBMITTED')")
      .andWhere("b.updated_at < now() - make_interval(secs => :s)", { s: staleSeconds })
      .orderBy("b.updated_at")
      .limit(limit)
      .getMany();
  }

  private async snapshots(m: EntityManager, ids: string[]): Promise<GenerationSnapshot[]> {
    const rows = await m
      .getRepository(GenerationEntity)
      .createQueryBuilder("g")
      .where("g.id = ANY(:ids)", { ids })
      .orderBy("g.created_at")
      .addOrderBy("g.id")
      .getMany();
    const attempts = await m
      .getRepository(AttemptEntity)
      .createQueryBuilder("a")
      .where("a.generation_id = ANY(:ids)", { ids })
      .getMany();
    return rows.map((g) =>
      toSnapshot(
        g,
        attempts.filter((a) => a.generationId === g.id),
      ),
    );
  }
}
