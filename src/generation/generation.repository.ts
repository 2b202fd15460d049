import type { DataSource, EntityManager } from "typeorm";
import {
  AttemptEntity,
  GenerationEntity,
  UsageRecordEntity,
  type CacheHitInfo,
  type GenerationErrorInfo,
  type GenerationStatus,
  type GenerationParams,
  type MediaType,
  type Priority,
  type QualityReportInfo,
  type StoredOutput,
  type Tier,
} from "../entities";
import { IdempotencyConflictError } from "../common/errors";
import type { AlertRow, BudgetOwner, BudgetRepository } from "../cost/budget.repository";
import { periodOf, WARNING_RATIO } from "../cost/budget.policy";
import { EntityRows } from "../infra/entity-rows";
import { toSnapshot, type GenerationSnapshot } from "./generation.events";

/** Which generations a caller may see: one account (optionally one of its users), or all. */
export interface AccessScope {
  accountId?: string;
  userId?: string;
}

export interface NewGeneration {
  accountId: string;
  userId: string;
  mediaType: MediaType;
  prompt: string;
  negativePrompt: string | null;
  model: string;
  seed: number;
  priority: Priority;
  params: GenerationParams;
  estimatedCostUsd: number;
  estimatedSeconds: number | null;
  idempotencyKey: string | null;
  requestHash: string;
  /** The exact-cache key the result will be stored under; null for BYPASS. */
  cacheKey: string | null;
  /** Set (to the cache key) when identical running requests may be joined. */
  inflightKey: string | null;
  /** What to hold against the budget (the dearest fallback); the estimate when unset. */
  reserveUsd?: number;
  /** The trace the request arrived in, for later steps to continue. */
  traceContext?: Record<string, string> | null;
}

/** How `createQueued` answered: a new generation to run, one attached to an identical running one, or a result served from Postgres. */
export type CreateOutcome =
  | { generation: GenerationSnapshot; created: false }
  | {
      generation: GenerationSnapshot;
      created: true;
      served: "QUEUED" | "INFLIGHT" | "EXACT";
      /** Budget warnings the reservation raised (stored; the caller publishes them). */
      alerts: AlertRow[];
    };

/** A generation that finished, with the identical requests that were attached to it. */
export interface Finished {
  generation: GenerationSnapshot;
  followers: GenerationSnapshot[];
}

/** The earlier result a cached generation copies. */
interface CacheSource {
  id: string;
  quality?: QualityReportInfo | null;
  cache_key?: string | null;
  prompt: string;
  provider: string | null;
  outputs: StoredOutput[];
  cost_usd: string | null;
}

export interface ListFilter {
  first: number;
  after?: { createdAt: string; id: string };
  status?: string;
  userId?: string;
}

export interface StaleGeneration {
  id: string;
  status: "QUEUED" | "PROCESSING";
  priority: Priority;
  runningAttempt: number | null;
  /** The status check last scheduled for the running attempt. */
  pollJobId: string | null;
}

const UNIQUE_VIOLATION = "23505";

/** Every Postgres read and write of the generation lifecycle. */
export class GenerationRepository {
  /** Row mappers of the statements written out here (`load`). */
  private readonly generationRows: EntityRows<GenerationEntity>;
  private readonly attemptRows: EntityRows<AttemptEntity>;

  constructor(
    private readonly db: DataSource,
    private readonly budgets: BudgetRepository,
    /** The tier of an end user seen for the first time. */
    private readonly defaultTier: Tier = "PRO",
  ) {
    this.generationRows = new EntityRows(db, GenerationEntity, "g");
    this.attemptRows = new EntityRows(db, AttemptEntity, "a");
  }

  async findSnapshot(id: string, scope: AccessScope = {}): Promise<GenerationSnapshot | null> {
    const found = await this.load(this.db.manager, id, { scope });
    return found && toSnapshot(found.generation, found.attempts);
  }

  async list(
    scope: AccessScope,
    filter: ListFilter,
  ): Promise<{ nodes: GenerationSnapshot[]; hasNextPage: boolean; totalCount: number }> {
    const qb = this.db.getRepository(GenerationEntity).createQueryBuilder("g").where("TRUE");
    if (scope.accountId) qb.andWhere("g.account_id = :accountId", { accountId: scope.accountId });
    const userId = scope.userId ?? filter.userId;
    if (userId !== undefined) qb.andWhere("g.user_id = :userId", { userId });
    if (filter.status) qb.andWhere("g.status = :status", { status: filter.status });
    const totalCount = await qb.clone().getCount();
    if (filter.after) {
      qb.andWhere("(g.created_at, g.id) < (:afterAt, :afterId)", {
        afterAt: filter.after.createdAt,
        afterId: filter.after.id,
      });
    }
    const rows = await qb
      .orderBy("g.created_at", "DESC")
      .addOrderBy("g.id", "DESC")
      .limit(filter.first + 1)
      .getMany();
    const page = rows.slice(0, filter.first);
    const attempts = await this.attemptsFor(
      this.db.manager,
      page.map((g) => g.id),
    );
    return {
      nodes: page.map((g) => toSnapshot(g, attempts.get(g.id) ?? [])),
      hasNextPage: rows.length > filter.first,
      totalCount,
    };
  }

  /**
   * Stores a new QUEUED generation, or returns the one already stored under the same
   * idempotency key (`created: false`). The key with other parameters is a conflict.
   *
   * With an in-flight key, an identical request still running is joined instead (the new
   * generation waits for it and pays nothing), and one that just finished is served from
   * Postgres. Racing identical requests are settled by the unique index on unfinished
   * in-flight keys: the loser retries and joins the winner.
   */
  async createQueued(
    input: NewGeneration,
    cacheTtlMs: number,
    /** BATCHED for BATCH priority: it waits for the batch collector instead of a submit job. */
    status: "QUEUED" | "BATCHED" = "QUEUED",
  ): Promise<CreateOutcome> {
    for (let round = 1; ; round++) {
      try {
        if (round === 1) {
          const fast = await this.insertQueuedAtOnce(input, cacheTtlMs, status);
          if (fast) return fast;
        }
        return await this.db.transaction(async (m): Promise<CreateOutcome> => {
          const owner = await this.upsertEndUser(m, input.accountId, input.userId);
          const endUserId = owner.endUserId;
          if (input.idempotencyKey) {
            const existing = await this.findByIdempotencyKey(
              m,
              input.accountId,
              input.idempotencyKey,
              input.requestHash,
            );
            if (existing) return { generation: existing, created: false };
          }
          if (input.inflightKey) {
            const joined = await this.joinIdentical(m, input, owner, cacheTtlMs);
            if (joined) return joined;
          }
          const budget = await this.budgets.reserve(m, owner, reserveOf(input));
          const g = m.getRepository(GenerationEntity).create({
            ...input,
            reservedUsd: reserveOf(input),
            budgetPeriod: budget.period,
            endUserId,
            status,
            progress: 0,
            outputs: [],
            cached: false,
            cacheHit: null,
            inflightOf: null,
            version: 1,
          });
          // `save` reads back id, defaults and timestamps through RETURNING: no second query.
          const saved = await m.getRepository(GenerationEntity).save(g);
          return {
            generation: toSnapshot(saved, []),
            created: true,
            served: "QUEUED",
            alerts: budget.alerts,
          };
        });
      } catch (err) {
        const e = err as { code?: string; constraint?: string };
        if (e.code !== UNIQUE_VIOLATION) throw err;
        // An identical request became the running one first: join it on the next round.
        if (e.constraint === "generations_inflight_key" && round < 5) continue;
        // Two requests with the same idempotency key raced; the loser answers with the winner's.
        if (input.idempotencyKey) {
          const existing = await this.findByIdempotencyKey(
            this.db.manager,
            input.accountId,
            input.idempotencyKey,
            input.requestHash,
          );
          if (existing) return { generation: existing, created: false };
        }
        throw err;
      }
    }
  }

  /**
   * The hot path of a miss, in one statement (one round trip, one commit, no transaction held
   * open across round trips): reserve the estimate on the user's ledger and store the
   * generation. It applies only to the common case and otherwise changes nothing and answers
   * undefined, leaving the request to the transactional path: a new end user or a month's
   * first reservation (no ledger yet), an account-wide limit (two ledgers), a reservation that
   * would pass the limit (the refusal) or raise the period's warning (the alert), a reused
   * idempotency key, or an identical request running or just finished (joined or served).
   *
   * The reservation is the same conditional UPDATE as `BudgetRepository.reserve`, re-checked
   * on the latest row version under concurrency, so budgets stay race-free. Racing identical
   * requests or idempotency keys fail on the same unique indexes as on the long path, and the
   * whole statement rolls back with them.
   */
  private async insertQueuedAtOnce(
    input: NewGeneration,
    cacheTtlMs: number,
    status: "QUEUED" | "BATCHED",
  ): Promise<CreateOutcome | undefined> {
    const reserve = reserveOf(input);
    const period = periodOf(new Date());
    const rows = (await this.db.query(
      `WITH eu AS (
         SELECT eu.id FROM end_users eu JOIN accounts a ON a.id = eu.account_id
          WHERE eu.account_id = $1 AND eu.user_id = $2 AND a.monthly_limit_usd IS NULL),
       elsewhere AS (
         SELECT 1 FROM generations
          WHERE $3::text IS NOT NULL AND account_id = $1 AND idempotency_key = $3
         UNION ALL
         SELECT 1 FROM generations
          WHERE $4::text IS NOT NULL AND inflight_key = $4
            AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')
         UNION ALL
         SELECT 1 FROM generations
          WHERE $4::text IS NOT NULL AND cache_key = $4 AND status = 'SUCCEEDED'
            AND completed_at > now() - make_interval(secs => $5)),
       b AS (
         UPDATE budget_periods b SET reserved_usd = b.reserved_usd + $6::numeric
           FROM eu
          WHERE b.end_user_id = eu.id AND b.period = $7
            AND b.spent_usd + b.reserved_usd + $6::numeric <= b.limit_usd
            AND (b.warned_at IS NOT NULL OR b.limit_usd <= 0
                 OR b.spent_usd + b.reserved_usd + $6::numeric < $8 * b.limit_usd)
            AND NOT EXISTS (SELECT 1 FROM elsewhere)
         RETURNING b.end_user_id)
       INSERT INTO generations (account_id, end_user_id, user_id, status, progress, media_type,
              prompt, negative_prompt, model, seed, priority, params, outputs,
              estimated_cost_usd, estimated_seconds, cached, cache_key, inflight_key,
              reserved_usd, trace_context, budget_period, idempotency_key, request_hash, version)
       SELECT $1, b.end_user_id, $2, $9, 0, $10, $11, $12, $13, $14, $15, $16::jsonb, '[]'::jsonb,
              $17::numeric, $18, false, $19, $4, $6::numeric, $20::jsonb, $7, $3, $21, 1
         FROM b
       RETURNING id, end_user_id, created_at, updated_at`,
      [
        input.accountId,
        input.userId,
        input.idempotencyKey,
        input.inflightKey,
        cacheTtlMs / 1000,
        reserve.toFixed(6),
        period,
        WARNING_RATIO,
        status,
        input.mediaType,
        input.prompt,
        input.negativePrompt,
        input.model,
        input.seed,
        input.priority,
        JSON.stringify(input.params),
        input.estimatedCostUsd.toFixed(6),
        input.estimatedSeconds,
        input.cacheKey,
        input.traceContext == null ? null : JSON.stringify(input.traceContext),
        input.requestHash,
      ],
    )) as Array<{ id: string; end_user_id: string; created_at: Date; updated_at: Date }>;
    const row = rows[0];
    if (!row) return undefined;
    const g = this.db.getRepository(GenerationEntity).create({
      ...input,
      id: row.id,
      endUserId: row.end_user_id,
      status,
      progress: 0,
      provider: null,
      outputs: [],
      costUsd: null,
      cached: false,
      error: null,
      cacheHit: null,
      inflightOf: null,
      quality: null,
      reservedUsd: Number(reserve.toFixed(6)),
      traceContext: input.traceContext ?? null,
      budgetPeriod: period,
      version: 1,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      startedAt: null,
      completedAt: null,
    });
    return { generation: toSnapshot(g, []), created: true, served: "QUEUED", alerts: [] };
  }

  /**
   * Stores a generation served from an earlier result (exact or semantic hit): SUCCEEDED at
   * once, cost 0, with a usage row marked cached. Null when the source may no longer be
   * served (purged, expired, gone): the caller treats that as a miss.
   */
  async createCached(
    input: NewGeneration,
    hit: Omit<CacheHitInfo, "originalPrompt">,
    cacheTtlMs: number,
  ): Promise<{ generation: GenerationSnapshot; created: boolean; savedUsd: number } | null> {
    if (!input.idempotencyKey) {
      const fast = await this.insertServedAtOnce(input, hit, cacheTtlMs);
      if (fast !== undefined) return fast;
    }
    try {
      return await this.db.transaction(async (m) => {
        const { endUserId } = await this.upsertEndUser(m, input.accountId, input.userId);
        if (input.idempotencyKey) {
          const existing = await this.findByIdempotencyKey(
            m,
            input.accountId,
            input.idempotencyKey,
            input.requestHash,
          );
          if (existing) return { generation: existing, created: false, savedUsd: 0 };
        }
        const [source] = (await m.query(
          `SELECT id, prompt, provider, outputs, cost_usd, cache_key, quality FROM generations
            WHERE id = $1 AND status = 'SUCCEEDED' AND cache_key IS NOT NULL
              AND completed_at > now() - make_interval(secs => $2)
            FOR SHARE`,
          [hit.sourceGenerationId, cacheTtlMs / 1000],
        )) as CacheSource[];
        if (!source) return null;
        const generation = await this.insertServed(
          m,
          input,
          endUserId,
          source,
          source.cache_key === input.cacheKey
            ? { kind: "EXACT", sourceGenerationId: source.id, originalPrompt: source.prompt }
            : { ...hit, originalPrompt: source.prompt },
        );
        return { generation, created: true, savedUsd: Number(source.cost_usd ?? 0) };
      });
    } catch (err) {
      if (input.idempotencyKey && (err as { code?: string }).code === UNIQUE_VIOLATION) {
        const existing = await this.findByIdempotencyKey(
          this.db.manager,
          input.accountId,
          input.idempotencyKey,
          input.requestHash,
        );
        if (existing) return { generation: existing, created: false, savedUsd: 0 };
      }
      throw err;
    }
  }

  /**
   * The hot path of a cache hit: check the source, store the generation and its usage row in
   * one statement (one round trip, one commit). Undefined when the end user is new (the
   * transactional path creates it); null when the source may no longer be served.
   */
  private async insertServedAtOnce(
    input: NewGeneration,
    hit: Omit<CacheHitInfo, "originalPrompt">,
    cacheTtlMs: number,
  ): Promise<
    { generation: GenerationSnapshot; created: true; savedUsd: number } | null | undefined
  > {
    // The commit does not wait for the WAL flush (synchronous_commit off, for this statement's
    // transaction only): on this class of disk the flush alone has a p99 of ~5 ms, the whole
    // budget of a hit. What a Postgres crash could lose is the last fraction of a second of
    // cost-0 hit rows; never a paid result, a charge or anything stored before.
    const [row] = (await this.db.query(
      `WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)),
       src AS (
         SELECT id, prompt, provider, outputs, cost_usd, cache_key, quality FROM generations
          WHERE id = $1 AND status = 'SUCCEEDED' AND cache_key IS NOT NULL
            AND completed_at > now() - make_interval(secs => $2)
            AND EXISTS (SELECT 1 FROM async_commit)
          FOR SHARE),
       eu AS (SELECT id FROM end_users WHERE account_id = $3 AND user_id = $4),
       g AS (
         INSERT INTO generations (account_id, end_user_id, user_id, status, progress, media_type,
                prompt, negative_prompt, model, provider, seed, priority, params, outputs,
                estimated_cost_usd, cost_usd, estimated_seconds, cached, cache_hit,
                request_hash, version, started_at, completed_at, quality)
         SELECT $3, eu.id, $4, 'SUCCEEDED', 1, $5, $6, $7, $8, src.provider, $9, $10, $11::jsonb,
                src.outputs, 0, 0, 0, true,
                -- Found by similarity but identical after all (Redis lost the exact entry).
                CASE WHEN src.cache_key = $14
                     THEN jsonb_build_object('kind', 'EXACT', 'sourceGenerationId', src.id::text,
                                             'originalPrompt', src.prompt)
                     ELSE $12::jsonb || jsonb_build_object('originalPrompt', src.prompt) END,
                $13, 1, now(), now(), src.quality
           FROM src, eu
         RETURNING id, end_user_id, provider, outputs, cache_hit, created_at, updated_at,
                   started_at, completed_at, quality),
       u AS (
         INSERT INTO usage_records (account_id, end_user_id, user_id, generation_id, model,
                provider, media_type, cost_usd, cached, cache_hit_kind, saved_usd, duration_ms)
         SELECT $3, g.end_user_id, $4, g.id, $8, g.provider, $5, 0, true, g.cache_hit->>'kind',
                COALESCE(src.cost_usd, 0), 0
           FROM g, src),
       cb AS (
         INSERT INTO callback_deliveries
                (id, generation_id, account_id, url, event, message_id, next_attempt_at)
         SELECT d.id, g.id, $3, $11::jsonb->>'callbackUrl', 'SUCCEEDED', d.id, now()
           FROM g CROSS JOIN LATERAL (SELECT gen_random_uuid() AS id) d
          WHERE $11::jsonb ? 'callbackUrl')
       SELECT (SELECT count(*) FROM src)::int AS src_found, (SELECT count(*) FROM eu)::int AS eu_found,
              (SELECT cost_usd FROM src) AS saved_usd, g.*
         FROM (SELECT 1) one LEFT JOIN g ON true`,
      [
        hit.sourceGenerationId,
        cacheTtlMs / 1000,
        input.accountId,
        input.userId,
        input.mediaType,
        input.prompt,
        input.negativePrompt,
        input.model,
        input.seed,
        input.priority,
        JSON.stringify(input.params),
        JSON.stringify(hit),
        input.requestHash,
        input.cacheKey,
      ],
    )) as Array<{
      src_found: number;
      eu_found: number;
      saved_usd: string | null;
      id: string | null;
      end_user_id: string;
      provider: string | null;
      outputs: StoredOutput[];
      cache_hit: CacheHitInfo;
      created_at: Date;
      updated_at: Date;
      started_at: Date;
      completed_at: Date;
      quality: QualityReportInfo | null;
    }>;
    if (!row || row.src_found === 0) return null;
    if (row.eu_found === 0 || row.id === null) return undefined;
    const g = this.db.getRepository(GenerationEntity).create({
      ...input,
      id: row.id,
      endUserId: row.end_user_id,
      status: "SUCCEEDED",
      progress: 1,
      provider: row.provider,
      outputs: row.outputs,
      estimatedCostUsd: 0,
      costUsd: 0,
      estimatedSeconds: 0,
      cached: true,
      cacheHit: row.cache_hit,
      quality: row.quality,
      cacheKey: null,
      inflightKey: null,
      inflightOf: null,
      idempotencyKey: null,
      version: 1,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      startedAt: row.started_at,
      completedAt: row.completed_at,
    });
    return {
      generation: toSnapshot(g, []),
      created: true,
      savedUsd: Number(row.saved_usd ?? 0),
    };
  }

  /** The exact cache keys of results that may no longer be served, after a purge. */
  async purgeCacheable(filter: { model?: string; generationId?: string }): Promise<string[]> {
    const rows = (await this.db.query(
      `UPDATE generations SET cache_key = NULL
        WHERE cache_key IS NOT NULL
          AND ($1::text IS NULL OR model = $1) AND ($2::uuid IS NULL OR id = $2)
        RETURNING cache_key`,
      [filter.model ?? null, filter.generationId ?? null],
    )) as [Array<{ cache_key: string }>, number];
    return [...new Set(rows[0].map((r) => r.cache_key))];
  }

  /** The earliest unfinished result for this in-flight key, or a fresh finished one. */
  private async joinIdentical(
    m: EntityManager,
    input: NewGeneration,
    owner: BudgetOwner,
    cacheTtlMs: number,
  ): Promise<CreateOutcome | null> {
    const endUserId = owner.endUserId;
    // The share lock holds the running generation's finishing transaction back until this
    // one commits, so that transaction sees (and completes) the generation attached here.
    const [running] = (await m.query(
      `SELECT id, prompt, status, progress, started_at FROM generations
        WHERE inflight_key = $1 AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')
        FOR SHARE`,
      [input.inflightKey],
    )) as Array<{
      id: string;
      prompt: string;
      status: GenerationStatus;
      progress: number;
      started_at: Date | null;
    }>;
    if (!running) {
      // A result Redis does not know (yet, or any more): served like an exact hit.
      const [done] = (await m.query(
        `SELECT id, prompt, provider, outputs, cost_usd, quality FROM generations
            WHERE cache_key = $1 AND status = 'SUCCEEDED'
              AND completed_at > now() - make_interval(secs => $2)
            ORDER BY completed_at DESC LIMIT 1`,
        [input.inflightKey, cacheTtlMs / 1000],
      )) as CacheSource[];
      if (done) {
        const generation = await this.insertServed(m, input, endUserId, done, {
          kind: "EXACT",
          sourceGenerationId: done.id,
          originalPrompt: done.prompt,
        });
        return { generation, created: true, served: "EXACT", alerts: [] };
      }
      return null;
    }
    // Attached requests hold their estimate too: if the one they wait for is canceled, one of
    // them runs (and pays) instead.
    const budget = await this.budgets.reserve(m, owner, reserveOf(input));
    const g = m.getRepository(GenerationEntity).create({
      ...input,
      reservedUsd: reserveOf(input),
      budgetPeriod: budget.period,
      cacheKey: null,
      inflightKey: null,
      inflightOf: running.id,
      endUserId,
      // Where the one it waits for is: its progress from now on is this one's too.
      ...(running.status === "PROCESSING"
        ? { status: "PROCESSING", progress: running.progress, startedAt: running.started_at }
        : { status: "QUEUED", progress: 0 }),
      outputs: [],
      cached: true,
      cacheHit: {
        kind: "INFLIGHT",
        sourceGenerationId: running.id,
        originalPrompt: running.prompt,
      },
      version: 1,
    });
    const saved = await m.getRepository(GenerationEntity).save(g);
    return {
      generation: toSnapshot(saved, []),
      created: true,
      served: "INFLIGHT",
      alerts: budget.alerts,
    };
  }

  private async insertServed(
    m: EntityManager,
    input: NewGeneration,
    endUserId: string,
    source: CacheSource,
    hit: CacheHitInfo,
  ): Promise<GenerationSnapshot> {
    const now = new Date();
    const g = m.getRepository(GenerationEntity).create({
      ...input,
      cacheKey: null,
      inflightKey: null,
      inflightOf: null,
      endUserId,
      status: "SUCCEEDED",
      progress: 1,
      provider: source.provider,
      outputs: source.outputs,
      costUsd: 0,
      estimatedCostUsd: 0,
      estimatedSeconds: 0,
      cached: true,
      cacheHit: hit,
      // The hit's outputs are the source's: so is the quality gate's report on them.
      quality: source.quality ?? null,
      version: 1,
      startedAt: now,
      completedAt: now,
    });
    const saved = await m.getRepository(GenerationEntity).save(g);
    await m
      .createQueryBuilder()
      .insert()
      .into(UsageRecordEntity)
      .values({
        accountId: saved.accountId,
        endUserId,
        userId: saved.userId,
        generationId: saved.id,
        model: saved.model,
        provider: source.provider,
        mediaType: saved.mediaType,
        costUsd: 0,
        cached: true,
        cacheHitKind: hit.kind,
        savedUsd: Number(source.cost_usd ?? 0),
        durationMs: 0,
      })
      .execute();
    await this.recordCallbacks(m, [saved.id], "SUCCEEDED");
    return toSnapshot(saved, []);
  }

  /**
   * Moves a generation to PROCESSING with a new RUNNING attempt, unless it is finished or an
   * attempt is already running. The row lock makes two workers handed the same job start
   * it once.
   */
  async startAttempt(
    id: string,
    provider: string,
    model: string,
  ): Promise<{
    generation: GenerationSnapshot;
    attempt: number;
    /** The requests attached to it, now PROCESSING with it. */
    followers: GenerationSnapshot[];
  } | null> {
    return this.db.transaction(async (m) => {
      const found = await this.load(m, id, { lock: true });
      if (!found) return null;
      const { generation: g, attempts } = found;
      if (g.status !== "QUEUED" && g.status !== "PROCESSING") return null;
      if (attempts.some((a) => a.status === "RUNNING")) return null;
      const number = attempts.reduce((max, a) => Math.max(max, a.number), 0) + 1;
      const startedAt = new Date();
      const { identifiers } = await m.getRepository(AttemptEntity).insert({
        generationId: id,
        number,
        provider,
        model,
        status: "RUNNING",
        startedAt,
      });
      const started = m.getRepository(AttemptEntity).create({
        id: identifiers[0]!.id as string,
        generationId: id,
        number,
        provider,
        model,
        status: "RUNNING",
        providerJobId: null,
        providerJobKey: null,
        pollJobId: null,
        batchId: null,
        error: null,
        errorCode: null,
        quality: null,
        startedAt,
        endedAt: null,
        durationMs: null,
        costUsd: null,
      });
      // The snapshot is the locked row with this change: what the database sets comes back.
      // The requests attached to it start with it, in the same statement.
      const [[row]] = (await m.query(
        `WITH followers AS (
           UPDATE generations
              SET status = 'PROCESSING', started_at = COALESCE(started_at, now()),
                  updated_at = now(), version = version + 1
            WHERE inflight_of = $1 AND status IN ('QUEUED', 'PROCESSING')
        RETURNING id)
         UPDATE generations
            SET status = 'PROCESSING', provider = $2, started_at = COALESCE(started_at, now()),
                updated_at = now(), version = version + 1
          WHERE id = $1
      RETURNING started_at, updated_at, version, ARRAY(SELECT id FROM followers) AS followers`,
        [id, provider],
      )) as [
        Array<{ started_at: Date; updated_at: Date; version: number; followers: string[] }>,
        number,
      ];
      Object.assign(g, {
        status: "PROCESSING",
        provider,
        startedAt: row!.started_at,
        updatedAt: row!.updated_at,
        version: row!.version,
      });
      return {
        generation: toSnapshot(g, [...attempts, started]),
        attempt: number,
        followers: await this.snapshots(m, row!.followers),
      };
    });
  }

  async setProviderJob(
    id: string,
    attempt: number,
    providerJobId: string,
    providerJobKey: string,
    pollJobId: string,
  ): Promise<void> {
    await this.db.query(
      `UPDATE attempts SET provider_job_id = $3, provider_job_key = $4, poll_job_id = $5
        WHERE generation_id = $1 AND number = $2`,
      [id, attempt, providerJobId, providerJobKey, pollJobId],
    );
  }

  /** Records the status check now driving the attempt; touching the row says it is alive. */
  async notePoll(id: string, attempt: number, pollJobId: string): Promise<void> {
    await this.db.transaction(async (m) => {
      await m.query(
        `UPDATE attempts SET poll_job_id = $3 WHERE generation_id = $1 AND number = $2`,
        [id, attempt, pollJobId],
      );
      await m.query(`UPDATE generations SET updated_at = now() WHERE id = $1`, [id]);
    });
  }

  async findAttempt(
    id: string,
    attempt: number,
  ): Promise<{ generation: GenerationEntity; attempt: AttemptEntity } | null> {
    const found = await this.load(this.db.manager, id);
    const a = found?.attempts.find((x) => x.number === attempt);
    return found && a ? { generation: found.generation, attempt: a } : null;
  }

  /** The attempt a provider's job id belongs to (webhooks name only that). */
  async findAttemptByProviderJob(
    provider: string,
    providerJobKey: string,
  ): Promise<{ attempt: AttemptEntity } | null> {
    const attempt = await this.db
      .getRepository(AttemptEntity)
      .findOneBy({ provider, providerJobKey });
    return attempt ? { attempt } : null;
  }

  /**
   * Records that the provider is still working (and how far), which also tells the
   * reconciler the job is alive. Returns the new snapshot when the progress moved.
   */
  async touchProgress(
    id: string,
    attempt: number,
    progress: number,
    /** The status check scheduled next, when this update comes from one. */
    pollJobId?: string,
  ): Promise<{ generation: GenerationSnapshot; followers: GenerationSnapshot[] } | null> {
    return this.db.transaction(async (m) => {
      const locked = await this.lockRunning(m, id, attempt);
      if (!locked) return null;
      const g = locked.generation;
      if (pollJobId) {
        await m.query(`UPDATE attempts SET poll_job_id = $2 WHERE id = $1`, [
          locked.attempt.id,
          pollJobId,
        ]);
      }
      if (progress <= g.progress) {
        await m.query(`UPDATE generations SET updated_at = now() WHERE id = $1`, [id]);
        return null;
      }
      // The requests attached to it move with it, in the same statement.
      const [[row]] = (await m.query(
        `WITH followers AS (
           UPDATE generations
              SET status = 'PROCESSING', progress = $2, started_at = COALESCE(started_at, now()),
                  updated_at = now(), version = version + 1
            WHERE inflight_of = $1 AND status IN ('QUEUED', 'PROCESSING') AND progress < $2
        RETURNING id)
         UPDATE generations SET progress = $2, updated_at = now(), version = version + 1
          WHERE id = $1
      RETURNING ARRAY(SELECT id FROM followers) AS followers`,
        [id, progress],
      )) as [Array<{ followers: string[] }>, number];
      return {
        generation: await this.current(m, id),
        followers: await this.snapshots(m, row!.followers),
      };
    });
  }

  /**
   * Finishes a generation successfully: outputs, cost, the attempt and one usage row, in one
   * transaction that only the first finisher wins. Returns null for everyone else.
   */
  async succeed(
    id: string,
    attempt: number,
    outputs: StoredOutput[],
    costUsd: number,
    /** The exact-cache key of what was produced (the attempt's model); null when not to be reused. */
    cacheKey: string | null,
    /** The quality gate's report on the outputs, kept on the attempt and the generation. */
    quality: QualityReportInfo | null = null,
  ): Promise<Finished | null> {
    return this.db.transaction(async (m) => {
      // All the attempts, for the snapshot returned: it is built from what this transaction
      // read and wrote, not read again.
      const found = await this.load(m, id, { lock: true });
      if (!found || found.generation.status !== "PROCESSING") return null;
      const { generation: g, attempts } = found;
      const a = attempts.find((x) => x.number === attempt);
      if (!a || a.status !== "RUNNING") return null;
      const endedAt = new Date();
      const durationMs = endedAt.getTime() - a.startedAt.getTime();
      await m.query(
        `UPDATE attempts
            SET status = 'SUCCEEDED', ended_at = $2, duration_ms = $3, cost_usd = $4,
                quality = COALESCE($5::jsonb, quality)
          WHERE id = $1`,
        [a.id, endedAt, durationMs, costUsd.toFixed(6), quality && JSON.stringify(quality)],
      );
      const [[row]] = (await m.query(
        `UPDATE generations
            SET status = 'SUCCEEDED', progress = 1, outputs = $2::jsonb, cost_usd = $3,
                cache_key = $4, quality = $5::jsonb, completed_at = now(), updated_at = now(),
                version = version + 1
          WHERE id = $1
      RETURNING completed_at, updated_at, version`,
        [
          id,
          JSON.stringify(outputs),
          costUsd.toFixed(6),
          cacheKey,
          quality && JSON.stringify(quality),
        ],
      )) as [Array<{ completed_at: Date; updated_at: Date; version: number }>, number];
      const followerIds = (await m.query(
        `UPDATE generations
            SET status = 'SUCCEEDED', progress = 1, outputs = $2::jsonb, provider = $3,
                cost_usd = 0, estimated_cost_usd = 0, cached = true,
                started_at = COALESCE(started_at, now()), completed_at = now(),
                updated_at = now(), version = version + 1
          WHERE inflight_of = $1 AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')
          RETURNING id`,
        [id, JSON.stringify(outputs), a.provider],
      )) as [Array<{ id: string }>, number];
      const ids = followerIds[0].map((r) => r.id);
      // The budget: this one is charged its cost, the attached ones nothing; all release.
      await this.budgets.settle(m, [{ id, costUsd }, ...ids.map((f) => ({ id: f, costUsd: 0 }))]);
      await this.recordCallbacks(m, [...withCallback(g, id), ...ids], "SUCCEEDED");
      // Usage last, just before the commit: its trigger adds to the account's daily usage row,
      // which every generation of the account finishing that day updates, so that row's lock
      // is held for the commit only, not for the rest of the transaction too.
      await m
        .createQueryBuilder()
        .insert()
        .into(UsageRecordEntity)
        .values({
          accountId: g.accountId,
          endUserId: g.endUserId,
          userId: g.userId,
          generationId: id,
          model: g.model,
          provider: a.provider,
          mediaType: g.mediaType,
          costUsd,
          cached: false,
          savedUsd: 0,
          durationMs: g.startedAt ? Date.now() - g.startedAt.getTime() : durationMs,
        })
        .orIgnore()
        .execute();
      if (ids.length > 0) {
        await m.query(
          `INSERT INTO usage_records (account_id, end_user_id, user_id, generation_id, model,
                  provider, media_type, cost_usd, cached, cache_hit_kind, saved_usd, duration_ms)
           SELECT account_id, end_user_id, user_id, id, model, $2, media_type, 0, true,
                  'INFLIGHT', $3, (EXTRACT(EPOCH FROM (completed_at - created_at)) * 1000)::int
             FROM generations WHERE id = ANY($1::uuid[])
           ON CONFLICT (generation_id) DO NOTHING`,
          [ids, a.provider, costUsd.toFixed(6)],
        );
      }
      // As stored: amounts rounded to micro-dollars, JSON as it reads back.
      const cost = Number(costUsd.toFixed(6));
      const reread = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
      Object.assign(a, {
        status: "SUCCEEDED",
        endedAt,
        durationMs,
        costUsd: cost,
        quality: quality ? reread(quality) : a.quality,
      });
      Object.assign(g, {
        status: "SUCCEEDED",
        progress: 1,
        outputs: reread(outputs),
        costUsd: cost,
        cacheKey,
        quality: quality && reread(quality),
        completedAt: row!.completed_at,
        updatedAt: row!.updated_at,
        version: row!.version,
      });
      return {
        generation: toSnapshot(g, attempts),
        followers: await this.snapshots(m, ids),
      };
    });
  }

  private async recordQuality(
    m: EntityManager,
    attemptId: string,
    quality: QualityReportInfo,
  ): Promise<void> {
    await m.query(`UPDATE attempts SET quality = $2::jsonb WHERE id = $1`, [
      attemptId,
      JSON.stringify(quality),
    ]);
  }

  /**
   * Records the callback deliveries of generations that just finished, in the transaction that
   * finishes them: a crash after the commit cannot lose one (the reconciler re-drives pending
   * deliveries that nothing is sending). Only generations given a callback URL get a row.
   */
  private async recordCallbacks(
    m: EntityManager,
    ids: string[],
    event: "SUCCEEDED" | "FAILED" | "CANCELED",
  ): Promise<void> {
    if (ids.length === 0) return;
    await m.query(
      `INSERT INTO callback_deliveries
              (id, generation_id, account_id, url, event, message_id, next_attempt_at)
       SELECT d.id, g.id, g.account_id, g.params->>'callbackUrl', $2, d.id, now()
         FROM generations g CROSS JOIN LATERAL (SELECT gen_random_uuid() AS id) d
        WHERE g.id = ANY($1::uuid[]) AND g.params->>'callbackUrl' IS NOT NULL
       ON CONFLICT (generation_id, event) DO NOTHING`,
      [ids, event],
    );
  }

  /** Snapshots of generations without attempts of their own (attached ones). */
  private async snapshots(m: EntityManager, ids: string[]): Promise<GenerationSnapshot[]> {
    if (ids.length === 0) return [];
    const rows = await m
      .getRepository(GenerationEntity)
      .createQueryBuilder("g")
      .where("g.id = ANY(:ids)", { ids })
      .getMany();
    return rows.map((g) => toSnapshot(g, []));
  }

  /**
   * Marks the attempt failed. With `final`, the generation fails too; otherwise it stays
   * PROCESSING for the next attempt. Returns null when the attempt was no longer running.
   */
  async failAttempt(
    id: string,
    attempt: number,
    error: GenerationErrorInfo,
    final: boolean,
    /** The quality gate's report when it is what refused the attempt's outputs. */
    quality: QualityReportInfo | null = null,
  ): Promise<Finished | null> {
    return this.db.transaction(async (m) => {
      const locked = await this.lockRunning(m, id, attempt);
      if (!locked) return null;
      const a = locked.attempt;
      await m.getRepository(AttemptEntity).update(
        { id: a.id },
        {
          status: "FAILED",
          endedAt: new Date(),
          durationMs: Date.now() - a.startedAt.getTime(),
          error: error.message,
          errorCode: error.code,
        },
      );
      if (quality) await this.recordQuality(m, a.id, quality);
      await m.query(
        final
          ? `UPDATE generations SET status = 'FAILED', error = $2::jsonb, completed_at = now(),
                    updated_at = now(), version = version + 1 WHERE id = $1`
          : `UPDATE generations SET updated_at = now(), version = version + 1 WHERE id = $1`,
        final ? [id, JSON.stringify(error)] : [id],
      );
      let ids: string[] = [];
      if (final) {
        // The identical requests attached to it would fail the same way: they end with it.
        const rows = (await m.query(
          `UPDATE generations SET status = 'FAILED', error = $2::jsonb, completed_at = now(),
                  updated_at = now(), version = version + 1
            WHERE inflight_of = $1 AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')
            RETURNING id`,
          [id, JSON.stringify(error)],
        )) as [Array<{ id: string }>, number];
        ids = rows[0].map((r) => r.id);
        // Nothing was produced: every reservation is released, nothing charged.
        await this.budgets.settle(
          m,
          [id, ...ids].map((g) => ({ id: g, costUsd: 0 })),
        );
        await this.recordCallbacks(m, [id, ...ids], "FAILED");
      }
      return {
        generation: await this.current(m, id),
        followers: await this.snapshots(m, ids),
      };
    });
  }

  /** Cancels an unfinished generation; returns it with the attempt that was running, if any. */
  async cancel(id: string): Promise<{
    generation: GenerationSnapshot;
    running: AttemptEntity | null;
    /** When requests were attached to the canceled one: the one now run for them. */
    promoted: GenerationSnapshot | null;
  } | null> {
    return this.db.transaction(async (m) => {
      const g = await this.lock(m, id);
      if (!g || !["QUEUED", "BATCHED", "PROCESSING"].includes(g.status)) return null;
      const running = await m
        .getRepository(AttemptEntity)
        .findOneBy({ generationId: id, status: "RUNNING" });
      if (running) {
        await m.getRepository(AttemptEntity).update(
          { id: running.id },
          {
            status: "CANCELED",
            endedAt: new Date(),
            durationMs: Date.now() - running.startedAt.getTime(),
          },
        );
      }
      await m.query(
        `UPDATE generations SET status = 'CANCELED', completed_at = now(), updated_at = now(),
                version = version + 1,
                error = '{"code":"CANCELED","message":"canceled by request","retryable":false}'::jsonb
          WHERE id = $1`,
        [id],
      );
      await this.budgets.settle(m, [{ id, costUsd: 0 }]);
      await this.recordCallbacks(m, [id], "CANCELED");
      const promoted = await this.promoteFollower(m, g);
      return { generation: await this.current(m, id), running, promoted };
    });
  }

  /**
   * A canceled generation's attached requests still want their result: the oldest becomes
   * the one that runs (and pays), the others attach to it.
   */
  private async promoteFollower(
    m: EntityManager,
    canceled: GenerationEntity,
  ): Promise<GenerationSnapshot | null> {
    const [next] = (await m.query(
      `SELECT id FROM generations
        WHERE inflight_of = $1 AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')
        ORDER BY created_at, id LIMIT 1 FOR UPDATE`,
      [canceled.id],
    )) as Array<{ id: string }>;
    if (!next) return null;
    await m.query(
      `UPDATE generations
          SET inflight_of = NULL, inflight_key = $2, cache_key = $3, cached = false,
              cache_hit = NULL, status = 'QUEUED', progress = 0, updated_at = now(),
              version = version + 1
        WHERE id = $1`,
      [next.id, canceled.inflightKey, canceled.cacheKey],
    );
    await m.query(
      `UPDATE generations
          SET inflight_of = $2::uuid,
              cache_hit = jsonb_set(cache_hit, '{sourceGenerationId}', to_jsonb($2::text)),
              -- Where the one they now wait for is: its work starts over.
              status = 'QUEUED', progress = 0, updated_at = now(), version = version + 1
        WHERE inflight_of = $1 AND status IN ('QUEUED', 'BATCHED', 'PROCESSING')`,
      [canceled.id, next.id],
    );
    const fresh = await m.getRepository(GenerationEntity).findOneByOrFail({ id: next.id });
    return toSnapshot(fresh, []);
  }

  /** Unfinished generations nobody has touched for `staleSeconds`: candidates for re-enqueueing. */
  async findStale(staleSeconds: number, limit: number): Promise<StaleGeneration[]> {
    const rows = (await this.db.query(
      `SELECT g.id, g.status, g.priority,
              a.number AS running_attempt, a.poll_job_id
         FROM generations g
         LEFT JOIN attempts a ON a.generation_id = g.id AND a.status = 'RUNNING'
        WHERE g.status IN ('QUEUED', 'PROCESSING') AND g.inflight_of IS NULL
          -- An attempt inside a provider batch is the batch's to drive (BatchProcessor.reconcile).
          AND a.batch_id IS NULL
          AND g.updated_at < now() - make_interval(secs => $1)
        ORDER BY g.updated_at
        LIMIT $2`,
      [staleSeconds, limit],
    )) as Array<{
      id: string;
      status: "QUEUED" | "PROCESSING";
      priority: Priority;
      running_attempt: number | null;
      poll_job_id: string | null;
    }>;
    return rows.map((r) => ({
      id: r.id,
      status: r.status,
      priority: r.priority,
      runningAttempt: r.running_attempt,
      pollJobId: r.poll_job_id,
    }));
  }

  /** The trace a generation started in (W3C headers), if it was traced. */
  async traceContext(id: string): Promise<Record<string, string> | undefined> {
    const [row] = (await this.db.query(`SELECT trace_context FROM generations WHERE id = $1`, [
      id,
    ])) as Array<{ trace_context: Record<string, string> | null }>;
    return row?.trace_context ?? undefined;
  }

  /** Marks a generation as looked after, so the reconciler leaves it alone for a while. */
  async touch(id: string): Promise<void> {
    await this.db.query(`UPDATE generations SET updated_at = now() WHERE id = $1`, [id]);
  }

  /** Median provider-to-result seconds over the model's recent successful generations. */
  async recentDurationSeconds(
    model: string,
    sample = 50,
  ): Promise<{ seconds: number; n: number } | null> {
    const [row] = (await this.db.query(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median, count(*)::int AS n
         FROM (SELECT EXTRACT(EPOCH FROM (completed_at - started_at)) AS s
                 FROM generations
                WHERE model = $1 AND status = 'SUCCEEDED' AND cached = false
                ORDER BY completed_at DESC
                LIMIT $2) recent`,
      [model, sample],
    )) as Array<{ median: number | null; n: number }>;
    return row && row.n > 0 && row.median !== null
      ? { seconds: Number(row.median), n: row.n }
      : null;
  }

  /** Generations waiting in one priority's queue (served by the partial index on unfinished rows). */
  async countQueued(priority: Priority): Promise<number> {
    const [row] = (await this.db.query(
      `SELECT count(*)::int AS n FROM generations
        WHERE status = 'QUEUED' AND priority = $1 AND inflight_of IS NULL`,
      [priority],
    )) as Array<{ n: number }>;
    return row?.n ?? 0;
  }

  /**
   * How many queued generations of the same or higher priority were created before this one
   * (for an attached generation, before the one it waits for); attached ones do not count.
   */
  async queuePosition(id: string): Promise<number | null> {
    const [row] = (await this.db.query(
      `SELECT (SELECT count(*)::int FROM generations o
                WHERE o.status = 'QUEUED' AND o.inflight_of IS NULL
                  AND (CASE o.priority WHEN 'INTERACTIVE' THEN 1 WHEN 'STANDARD' THEN 5 ELSE 10 END)
                      <= (CASE g.priority WHEN 'INTERACTIVE' THEN 1 WHEN 'STANDARD' THEN 5 ELSE 10 END)
                  AND o.created_at < g.created_at) AS ahead
         FROM generations g
        WHERE g.id = (SELECT COALESCE(inflight_of, id) FROM generations WHERE id = $1)
          AND g.status = 'QUEUED'`,
      [id],
    )) as Array<{ ahead: number }>;
    return row ? row.ahead + 1 : null;
  }

  private async findByIdempotencyKey(
    m: EntityManager,
    accountId: string,
    key: string,
    requestHash: string,
  ): Promise<GenerationSnapshot | null> {
    const existing = await m
      .getRepository(GenerationEntity)
      .findOneBy({ accountId, idempotencyKey: key });
    if (!existing) return null;
    if (existing.requestHash !== requestHash) throw new IdempotencyConflictError();
    return this.withAttempts(m, existing);
  }

  /**
   * The end user (created on first use, with the default tier) and the limits over it. Reads
   * first: nearly every call finds one.
   */
  private async upsertEndUser(
    m: EntityManager,
    accountId: string,
    userId: string,
  ): Promise<BudgetOwner> {
    const find = async () => {
      const [row] = (await m.query(
        `SELECT eu.id, eu.tier, eu.monthly_limit_usd, a.monthly_limit_usd AS account_limit_usd
           FROM end_users eu JOIN accounts a ON a.id = eu.account_id
          WHERE eu.account_id = $1 AND eu.user_id = $2`,
        [accountId, userId],
      )) as Array<{
        id: string;
        tier: Tier;
        monthly_limit_usd: string | null;
        account_limit_usd: string | null;
      }>;
      return row
        ? {
            accountId,
            userId,
            endUserId: row.id,
            tier: row.tier,
            monthlyLimitUsd: row.monthly_limit_usd === null ? null : Number(row.monthly_limit_usd),
            accountLimitUsd: row.account_limit_usd === null ? null : Number(row.account_limit_usd),
          }
        : null;
    };
    const existing = await find();
    if (existing) return existing;
    await m.query(
      `INSERT INTO end_users (account_id, user_id, tier) VALUES ($1, $2, $3)
       ON CONFLICT (account_id, user_id) DO NOTHING`,
      [accountId, userId, this.defaultTier],
    );
    // Ours, or the one a concurrent request inserted between our read and our insert.
    return (await find())!;
  }

  /** Locks a PROCESSING generation and returns it with the attempt, if that attempt still runs. */
  private async lockRunning(
    m: EntityManager,
    id: string,
    attempt: number,
  ): Promise<{ generation: GenerationEntity; attempt: AttemptEntity } | null> {
    const found = await this.load(m, id, { lock: true });
    if (!found || found.generation.status !== "PROCESSING") return null;
    const a = found.attempts.find((x) => x.number === attempt);
    return a && a.status === "RUNNING" ? { generation: found.generation, attempt: a } : null;
  }

  /**
   * A generation and its attempts in one round trip (a join); with `lock`, the generation's
   * row is locked for the transaction. Every step of a generation starts with this read, and
   * on a loaded host each round trip to Postgres costs more than the query itself.
   */
  private async load(
    m: EntityManager,
    id: string,
    opts: { lock?: boolean; scope?: AccessScope } = {},
  ): Promise<{ generation: GenerationEntity; attempts: AttemptEntity[] } | null> {
    const { accountId, userId } = scopeWhere(opts.scope ?? {});
    const params: unknown[] = [id];
    let where = `g.id = $1`;
    if (accountId) where += ` AND g.account_id = $${params.push(accountId)}`;
    if (userId !== undefined) where += ` AND g.user_id = $${params.push(userId)}`;
    const rows = (await m.query(
      `SELECT ${this.generationRows.select("g")}, ${this.attemptRows.select("a")}
         FROM generations g LEFT JOIN attempts a ON a.generation_id = g.id
        WHERE ${where}
        ORDER BY a.number
        ${opts.lock ? "FOR UPDATE OF g" : ""}`,
      params,
    )) as Array<Record<string, unknown>>;
    const first = rows[0];
    if (!first) return null;
    const attempts: AttemptEntity[] = [];
    for (const row of rows) {
      const a = this.attemptRows.from(row);
      if (a) attempts.push(a);
    }
    return { generation: this.generationRows.from(first)!, attempts };
  }

  private async lock(m: EntityManager, id: string): Promise<GenerationEntity | null> {
    return m
      .getRepository(GenerationEntity)
      .createQueryBuilder("g")
      .setLock("pessimistic_write")
      .where("g.id = :id", { id })
      .getOne();
  }

  /** A generation as its transaction sees it now: the row and its attempts in one statement. */
  private async current(m: EntityManager, id: string): Promise<GenerationSnapshot> {
    const found = await this.load(m, id);
    if (!found) throw new Error(`generation ${id} is gone within its own transaction`);
    return toSnapshot(found.generation, found.attempts);
  }

  private async withAttempts(m: EntityManager, g: GenerationEntity): Promise<GenerationSnapshot> {
    const attempts = await m.getRepository(AttemptEntity).findBy({ generationId: g.id });
    return toSnapshot(g, attempts);
  }

  private async attemptsFor(
    m: EntityManager,
    ids: string[],
  ): Promise<Map<string, AttemptEntity[]>> {
    const byGeneration = new Map<string, AttemptEntity[]>();
    if (ids.length === 0) return byGeneration;
    const rows = await m
      .getRepository(AttemptEntity)
      .createQueryBuilder("a")
      .where("a.generation_id = ANY(:ids)", { ids })
      .getMany();
    for (const a of rows) {
      const list = byGeneration.get(a.generationId) ?? [];
      list.push(a);
      byGeneration.set(a.generationId, list);
    }
    return byGeneration;
  }
}

/** `[id]` when the generation was given a callback URL: no statement for those without. */
function withCallback(g: GenerationEntity, id: string): string[] {
  return g.params.callbackUrl != null ? [id] : [];
}

function scopeWhere(scope: AccessScope): { accountId?: string; userId?: string } {
  const where: { accountId?: string; userId?: string } = {};
  if (scope.accountId) where.accountId = scope.accountId;
  if (scope.userId !== undefined) where.userId = scope.userId;
  return where;
}

function reserveOf(input: NewGeneration): number {
  return input.reserveUsd ?? input.estimatedCostUsd;
}
