import { createHash } from "node:crypto";
import type { Logger } from "../common/logger";
import { estimateCost, roundUsd } from "../cost/cost-estimator";
import type { ModelCatalog, ProviderRoute } from "../cost/model-catalog";
import type { Job } from "../infra/queue/queue.driver";
import {
  ProviderError,
  ProviderErrorCode,
  type BatchItem,
  type FinishedJobState,
  type ProviderBatchApi,
  type ProviderRegistry,
} from "../providers";
import type { CircuitBreaker } from "../routing/circuit-breaker";
import type { ModelAvailability } from "../routing/model-availability";
import type { BatchMember, BatchRepository, ClaimTarget, Claimed } from "./batch.repository";
import type { GenerationEvents, GenerationSnapshot } from "./generation.events";
import type { GenerationQueue } from "./generation.queue";

export interface BatchOptions {
  /** A group of this many waiting generations goes out at once. @defaultValue 50 */
  batchSize: number;
  /** A group whose oldest generation waited this long goes out whatever its size. @defaultValue 60 */
  timeoutSeconds: number;
  /** Bounds of the wait between two status checks of a submitted batch. */
  pollMinMs: number;
  pollMaxMs: number;
  /** An open batch untouched this long has lost its submit or poll job. */
  staleSeconds: number;
  /**
   * A batch with no result after this long fails its generations (as a provider timeout),
   * unless its provider's batch API states a deadline of its own (`ProviderBatchApi.deadlineMs`).
   */
  maxWaitMs: number;
  /** Tries of a batch submission that failed with a retryable error. @defaultValue 4 */
  submitTries?: number;
}

/** What batching needs of the per-request worker: finishing an attempt through its paths. */
export interface AttemptSettler {
  settleAttempt(
    generationId: string,
    attempt: number,
    provider: string,
    mediaType: BatchMember["mediaType"],
    state: FinishedJobState,
  ): Promise<void>;
}

/**
 * The worker side of batching, three kinds of short steps:
 * - `batch-collect`: groups BATCHED generations by model, and claims a group (oldest first)
 *   once it holds `batchSize` or its oldest waited `timeoutSeconds`; then schedules itself for
 *   the next group's deadline. A new BATCHED row wakes it; the reconciler runs it too.
 * - `batch-submit`: sends a claimed batch, idempotently: the batch's id is the provider-side
 *   idempotency key and each item's custom id is `<generation>.<attempt>`, so a submit that
 *   runs twice (a worker killed after the provider answered) creates nothing twice.
 * - `batch-poll`: asks for the batch's status; once complete, fans each result out through
 *   the per-request worker's success and failure paths (failed items retry along the fallback
 *   chain as ordinary requests). A batch past its provider's deadline, or whose generations
 *   were all canceled, is canceled at the provider.
 * A model whose chosen provider has no batch API gets its claimed generations queued as
 * ordinary requests, at the full price.
 */
export class BatchProcessor {
  constructor(
    private readonly repo: BatchRepository,
    private readonly queue: GenerationQueue,
    private readonly events: GenerationEvents,
    private readonly catalog: ModelCatalog,
    private readonly providers: ProviderRegistry,
    private readonly breaker: CircuitBreaker,
    private readonly availability: ModelAvailability,
    private readonly settler: AttemptSettler,
    private readonly opts: BatchOptions,
    private readonly logger: Logger,
  ) {}

  static readonly JOBS: ReadonlySet<string> = new Set([
    "batch-collect",
    "batch-submit",
    "batch-poll",
  ]);

  handle = async (job: Job): Promise<void> => {
    switch (job.name) {
      case "batch-collect":
        await this.collect();
        return;
      case "batch-submit":
        return this.submit(job.data.batchId ?? "", job.data.attempt ?? 1);
      case "batch-poll":
        return this.poll(job.data.batchId ?? "");
    }
  };

  /** One collector pass; returns how many generations it claimed. */
  async collect(): Promise<number> {
    let claimed = 0;
    for (const group of await this.repo.waitingGroups()) {
      const due =
        group.count >= this.opts.batchSize || group.oldestAgeSeconds >= this.opts.timeoutSeconds;
      if (!due) continue;
      const target = await this.targetFor(group.model);
      const limit = Math.min(
        this.opts.batchSize,
        target.kind === "batch" ? target.api.maxItems : this.opts.batchSize,
      );
      // Full batches while there are enough; the remainder only once its oldest is overdue.
      for (;;) {
        const got = await this.repo.claim(
          group.model,
          { limit, minCount: limit, timeoutSeconds: this.opts.timeoutSeconds },
          target.claim,
        );
        if (!got) break;
        claimed += got.generations.length;
        await this.launch(got);
        if (got.generations.length < limit) break;
      }
    }
    await this.scheduleDeadlines();
    return claimed;
  }

  /** A collector pass at each waiting group's deadline, so a small group is never forgotten. */
  private async scheduleDeadlines(): Promise<void> {
    for (const group of await this.repo.waitingGroups()) {
      const waitMs = Math.max(0, (this.opts.timeoutSeconds - group.oldestAgeSeconds) * 1000);
      const at = Date.now() + waitMs;
      // Keyed by model and deadline (to 100 ms): passes that see the same deadline add one job.
      const key = `due-${createHash("sha256").update(group.model).digest("hex").slice(0, 12)}-${Math.ceil(at / 100)}`;
      await this.queue.collectBatches(key, Math.ceil(waitMs) + 20);
    }
  }

  /**
   * Where a model's batch goes: the first of its providers (in the catalog's order) that is
   * configured, not marked unavailable, not open-circuited and has a batch API; else, plain
   * requests (which take the fallback chain and its circuit checks as usual).
   */
  private async targetFor(
    modelName: string,
  ): Promise<
    | { kind: "batch"; api: ProviderBatchApi; claim: ClaimTarget }
    | { kind: "requests"; claim: ClaimTarget }
  > {
    const model = this.catalog.get(modelName);
    for (const route of model?.routes ?? []) {
      const api = this.providers.get(route.provider)?.batch;
      if (!api || !(await this.usable(route))) continue;
      return {
        kind: "batch",
        api,
        claim: { kind: "batch", provider: route.provider, providerModel: route.model },
      };
    }
    return { kind: "requests", claim: { kind: "requests" } };
  }

  private async usable(route: ProviderRoute): Promise<boolean> {
    if (await this.availability.isUnavailable(route)) return false;
    const health = await this.breaker.health(route.provider).catch(() => null);
    return health?.circuit !== "OPEN";
  }

  private async launch(claimed: Claimed): Promise<void> {
    if (claimed.kind === "requests") {
      for (const g of claimed.generations) {
        await this.queue
          .submit(g.id, g.priority)
          .catch((err: unknown) =>
            this.logger.error(
              { err, generationId: g.id },
              "enqueue failed; left to the reconciler",
            ),
          );
        await this.publish("QUEUED", g);
      }
      return;
    }
    this.logger.info(
      { batchId: claimed.batchId, size: claimed.generations.length },
      "batch collected",
    );
    await this.queue
      .submitBatch(claimed.batchId)
      .catch((err: unknown) =>
        this.logger.error({ err, batchId: claimed.batchId }, "batch submit not enqueued"),
      );
    for (const g of claimed.generations) await this.publish("STARTED", g);
  }

  async submit(batchId: string, tryNumber = 1): Promise<void> {
    const batch = await this.repo.find(batchId);
    if (!batch || batch.status !== "COLLECTED") return;
    const api = this.providers.get(batch.provider)?.batch;
    const members = await this.repo.members(batchId);
    if (!api) {
      return this.failMembers(
        batch,
        members,
        new ProviderError(`provider ${batch.provider} has no batch API here`, "NO_PROVIDER", true),
      );
    }
    // Every member is sent, canceled ones included: the set must not change between two
    // tries of the same submission, or the idempotency key would name two different batches.
    const items: BatchItem[] = members.map((m) => ({
      customId: customIdOf(m),
      request: {
        generationId: m.generationId,
        attempt: m.attempt,
        model: batch.providerModel,
        mediaType: m.mediaType,
        prompt: m.prompt,
        negativePrompt: m.negativePrompt ?? undefined,
        seed: m.seed,
        width: m.params.width,
        height: m.params.height,
        durationSeconds: m.params.durationSeconds,
      },
    }));
    let submitted: { providerBatchId: string; pollAfterMs?: number };
    try {
      submitted = await api.submit(items, {
        model: batch.providerModel,
        idempotencyKey: batch.id,
        collectedAt: batch.createdAt,
      });
    } catch (err) {
      const retryable = !(err instanceof ProviderError) || err.retryable;
      const tries = this.opts.submitTries ?? 4;
      if (retryable && tryNumber < tries) {
        this.logger.warn({ err, batchId, try: tryNumber }, "batch submission failed; retrying");
        await this.repo.notePoll(batchId, null);
        await this.queue.submitBatch(batchId, this.pollDelay(undefined, tryNumber), true);
        return;
      }
      // The same key was used for every try, so the provider holds at most this batch: none.
      this.logger.warn({ err, batchId }, "batch submission failed; members go one by one");
      return this.failMembers(batch, members, err);
    }
    const next = this.queue.batchPollJobId(batchId);
    if (!(await this.repo.recordSubmitted(batchId, submitted.providerBatchId, next))) return;
    this.logger.info(
      {
        batchId,
        provider: batch.provider,
        providerBatchId: submitted.providerBatchId.slice(0, 64),
        size: items.length,
      },
      "batch submitted",
    );
    await this.queue.pollBatch(batchId, this.pollDelay(submitted.pollAfterMs), next);
  }

  async poll(batchId: string): Promise<void> {
    const batch = await this.repo.find(batchId);
    if (!batch || batch.status !== "SUBMITTED" || !batch.providerBatchId) return;
    const api = this.providers.get(batch.provider)?.batch;
    const members = await this.repo.members(batchId);
    if (!api) {
      return this.failMembers(
        batch,
        members,
        new ProviderError(`provider ${batch.provider} is not configured`, "NO_PROVIDER", true),
      );
    }
    if (members.length > 0 && members.every((m) => m.generationStatus === "CANCELED")) {
      // Nobody waits for these results any more: stop paying for them.
      await this.cancelAtProvider(api, batch);
      await this.repo.finish(batchId, {
        status: "FAILED",
        succeeded: 0,
        failed: 0,
        error: "CANCELED: every generation of the batch was canceled",
      });
      this.logger.info({ batchId }, "batch abandoned: every generation canceled");
      return;
    }
    const age = Date.now() - (batch.submittedAt ?? batch.createdAt).getTime();
    const deadlineMs = api.deadlineMs ?? this.opts.maxWaitMs;
    const again = async (hintMs: number | undefined) => {
      const next = this.queue.batchPollJobId(batchId);
      await this.repo.notePoll(batchId, next);
      await this.queue.pollBatch(batchId, this.pollDelay(hintMs), next);
    };
    let state;
    try {
      state = await api.getStatus(batch.providerBatchId);
    } catch (err) {
      if (err instanceof ProviderError && !err.retryable)
        return this.failMembers(batch, members, err);
      this.logger.warn({ err, batchId }, "batch status check failed; checking again");
      return again(this.opts.pollMaxMs);
    }
    if (state.status === "pending") {
      if (age > deadlineMs) {
        await this.cancelAtProvider(api, batch);
        return this.failMembers(
          batch,
          members,
          new ProviderError(
            `no result from the ${batch.provider} batch within ${deadlineMs / 1000} s`,
            ProviderErrorCode.Timeout,
            true,
          ),
        );
      }
      return again(state.pollAfterMs);
    }
    if (state.status === "failed") return this.failMembers(batch, members, state.error);
    let succeeded = 0;
    let failed = 0;
    for (const m of members) {
      const result: FinishedJobState = state.results.get(customIdOf(m)) ?? {
        status: "failed",
        error: new ProviderError(
          "the batch ended without running this request",
          ProviderErrorCode.ProviderError,
          true,
        ),
      };
      if (result.status === "succeeded") succeeded++;
      else failed++;
      if (!isWaiting(m)) continue;
      const priced =
        result.status === "succeeded" && result.costUsd === undefined
          ? { ...result, costUsd: this.batchPrice(m, batch.provider, api.discount) }
          : result;
      await this.settler.settleAttempt(
        m.generationId,
        m.attempt,
        batch.provider,
        m.mediaType,
        priced,
      );
    }
    await this.repo.finish(batchId, { status: "COMPLETED", succeeded, failed });
    this.logger.info({ batchId, succeeded, failed }, "batch completed");
  }

  /**
   * Puts back what nothing drives any more: due groups (a collector pass), collected batches
   * whose submit job is gone, submitted batches whose status-check chain is gone. Returns how
   * many batches and generations it moved.
   */
  async reconcile(): Promise<number> {
    let moved = await this.collect();
    for (const batch of await this.repo.findStale(this.opts.staleSeconds)) {
      if (batch.status === "COLLECTED") {
        if (await this.queue.hasBatchSubmit(batch.id)) continue;
        await this.repo.notePoll(batch.id, null);
        await this.queue.submitBatch(batch.id, 0, true);
        moved++;
        continue;
      }
      if (batch.pollJobId && (await this.queue.has(batch.pollJobId))) {
        await this.repo.notePoll(batch.id, null);
        continue;
      }
      const next = this.queue.batchPollJobId(batch.id);
      await this.repo.notePoll(batch.id, next);
      await this.queue.pollBatch(batch.id, 0, next);
      moved++;
    }
    return moved;
  }

  /** The whole batch failed: each member's attempt fails, and retries as a plain request. */
  private async failMembers(
    batch: { id: string; provider: string },
    members: BatchMember[],
    err: unknown,
  ): Promise<void> {
    const error =
      err instanceof ProviderError
        ? err
        : new ProviderError("batch failed unexpectedly", "INTERNAL_ERROR", true);
    for (const m of members) {
      if (!isWaiting(m)) continue;
      await this.settler.settleAttempt(m.generationId, m.attempt, batch.provider, m.mediaType, {
        status: "failed",
        error,
      });
    }
    await this.repo.finish(batch.id, {
      status: "FAILED",
      succeeded: 0,
      failed: members.length,
      error: `${error.code}: ${error.message}`,
    });
  }

  /** Best effort: a batch gengate gave up on is stopped at the provider, where it can be. */
  private async cancelAtProvider(
    api: ProviderBatchApi,
    batch: { id: string; providerBatchId: string | null },
  ): Promise<void> {
    if (!api.cancel || !batch.providerBatchId) return;
    await api
      .cancel(batch.providerBatchId)
      .catch((err: unknown) =>
        this.logger.warn({ err, batchId: batch.id }, "batch not canceled at the provider"),
      );
  }

  /**
   * The catalog's synchronous price of what was asked at the batch's provider, less that
   * provider's batch discount.
   */
  private batchPrice(m: BatchMember, provider: string, discount: number): number | undefined {
    const model = this.catalog.get(m.model);
    if (!model) return undefined;
    const full = estimateCost(model, {
      width: m.params.width,
      height: m.params.height,
      durationSeconds: m.params.durationSeconds,
      priority: "STANDARD",
      provider,
    }).estimatedCostUsd;
    return roundUsd(full * (1 - discount));
  }

  private pollDelay(hintMs: number | undefined, tryNumber = 1): number {
    const base = hintMs ?? this.opts.pollMinMs * 2 ** (tryNumber - 1);
    return Math.min(this.opts.pollMaxMs, Math.max(this.opts.pollMinMs, base));
  }

  private async publish(type: "QUEUED" | "STARTED", g: GenerationSnapshot): Promise<void> {
    await this.events
      .publish(type, g)
      .catch((err: unknown) => this.logger.error({ err, generationId: g.id }, "publish failed"));
  }
}

function customIdOf(m: Pick<BatchMember, "generationId" | "attempt">): string {
  return `${m.generationId}.${m.attempt}`;
}

/** Still waiting for this batch's result (not canceled, not finished some other way). */
function isWaiting(m: BatchMember): boolean {
  return m.attemptStatus === "RUNNING" && m.generationStatus === "PROCESSING";
}
