import type { Logger } from "../common/logger";
import type { GenerationErrorInfo, MediaType } from "../entities";
import type { ModelCatalog } from "../cost/model-catalog";
import { estimateCost } from "../cost/cost-estimator";
import type { Job } from "../infra/queue/queue.driver";
import { withProviderDeadline } from "../providers/provider.http";
import {
  ProviderError,
  ProviderErrorCode,
  clampProgress,
  isFinished,
  type FinishedJobState,
  type ProviderAdapter,
  type ProviderJobState,
  type ProviderOutput,
  type ProviderRegistry,
} from "../providers";
import { toSnapshot, type GenerationEvents, type GenerationSnapshot } from "./generation.events";
import type { GenerationQueue } from "./generation.queue";
import type { Finished, GenerationRepository } from "./generation.repository";
import type { FetchedOutput, OutputStoreService } from "./output-store.service";
import { QualityFailedError, type QualityGate, type QualityReport } from "../quality";
import type { CallbackService } from "../callbacks";
import type { CircuitBreaker, CircuitTransition } from "../routing/circuit-breaker";
import { fallbackChain, type Candidate } from "../routing/fallback-chain";
import { exactCacheKey } from "../cache/cache-key";
import type { CacheableResult } from "../cache/cache.service";
import type { ModelAvailability } from "../routing/model-availability";
import { observeFinished, type MetricsRecorder } from "../observability/metrics";
import type { AnomalyObserver } from "../observability/anomaly.detector";

/** How long a cancel at the provider may take after an attempt timed out (at most). */
const CANCEL_TIMEOUT_MS = 5_000;

export interface ProcessorOptions {
  /** Attempts per generation, across providers. @defaultValue 3 */
  maxAttempts: number;
  /** Shortest and longest wait between two status polls. */
  pollMinMs: number;
  pollMaxMs: number;
  /** An attempt with no provider job after this long was lost mid-submit. */
  staleMs: number;
  /**
   * Total time a generation may take across attempts before it fails, not counting its time
   * in a provider batch (see `generationElapsedMs`). @defaultValue 15 min
   */
  maxTotalMs: number;
  /** Public base URL providers call back; without it every job is polled. */
  webhookBaseUrl?: string;
  /** With webhooks, a status check still runs this often, in case a webhook is lost. */
  webhookBackstopMs: number;
}

/**
 * The worker side of the lifecycle. Each job is one short step (submit, or one status check)
 * so a worker slot is never held while a provider works; the next step is a delayed job, or
 * the provider's webhook. Every transition is a conditional write, so a step that runs twice
 * (a webhook racing a poll, a duplicate job) changes nothing twice.
 */
export class GenerationProcessor {
  constructor(
    private readonly repo: GenerationRepository,
    private readonly queue: GenerationQueue,
    private readonly events: GenerationEvents,
    private readonly catalog: ModelCatalog,
    private readonly providers: ProviderRegistry,
    private readonly outputs: OutputStoreService,
    private readonly callbacks: CallbackService,
    private readonly breaker: CircuitBreaker,
    private readonly availability: ModelAvailability,
    private readonly health: { publish(t: CircuitTransition): Promise<void> },
    /** Where paid results are remembered for identical and similar requests. */
    private readonly cache: { remember(result: CacheableResult): Promise<void> },
    private readonly alerts: { deliver(alertId: string, attempt: number): Promise<void> },
    private readonly anomalies: AnomalyObserver,
    private readonly opts: ProcessorOptions,
    private readonly logger: Logger,
    private readonly metrics: MetricsRecorder,
    /** Judges outputs before they are accepted; without one, every output is accepted. */
    private readonly quality?: Pick<QualityGate, "inspect">,
  ) {}

  handle = async (job: Job): Promise<void> => {
    switch (job.name) {
      case "submit":
        return this.submit(job.data.generationId);
      case "callback":
        return this.callbacks.deliver(job.data.deliveryId ?? "");
      case "alert":
        return this.alerts.deliver(job.data.alertId ?? "", job.data.attempt ?? 0);
      case "poll":
        return this.poll(job.data.generationId, job.data.attempt ?? 1, job.data.once === true);
    }
  };

  async submit(generationId: string): Promise<void> {
    const current = await this.repo.findSnapshot(generationId);
    if (!current || (current.status !== "QUEUED" && current.status !== "PROCESSING")) return;
    // Attached to an identical running generation: that one's result completes it.
    if (current.inflightOf) return;
    if (generationElapsedMs(current) > this.opts.maxTotalMs) {
      return this.failUnstarted(current, {
        code: "PROVIDER_UNAVAILABLE",
        message: `no provider could take the generation within ${this.opts.maxTotalMs / 1000} s`,
        retryable: true,
      });
    }
    const pick = await this.pickCandidate(current);
    if ("waitMs" in pick) {
      // Every provider of the chain is open or paused: come back when the first may be tried.
      await this.queue.resubmit(generationId, current.priority, pick.waitMs);
      return;
    }
    if ("none" in pick) {
      this.logger.error({ generationId, model: current.model }, "no provider available for model");
      return this.failUnstarted(current, {
        code: "NO_PROVIDER",
        message: `no provider is available for model ${current.model}`,
        retryable: false,
      });
    }
    const { model, route } = pick.candidate;
    const adapter = this.providers.get(route.provider)!;
    const started = await this.repo.startAttempt(generationId, adapter.name, model.name);
    if (!started) return;
    if (started.attempt === 1)
      this.metrics.queueWait(current.priority, generationElapsedMs(current) / 1000);
    for (const g of [started.generation, ...started.followers]) await this.publish("STARTED", g);
    const g = started.generation;
    const webhookUrl =
      adapter.supportsWebhooks && this.opts.webhookBaseUrl
        ? `${this.opts.webhookBaseUrl}/webhooks/providers/${adapter.name}`
        : undefined;
    // The submission counts against the attempt's provider timeout: a provider that never
    // answers fails the attempt (and frees this worker slot) when it runs out.
    const timeoutMs = model.timeoutSeconds * 1000;
    try {
      const result = await withProviderDeadline(timeoutMs, () =>
        adapter.submit({
          generationId,
          attempt: started.attempt,
          model: route.model,
          mediaType: g.mediaType,
          prompt: g.prompt,
          negativePrompt: g.negativePrompt ?? undefined,
          seed: g.seed,
          width: g.width ?? undefined,
          height: g.height ?? undefined,
          durationSeconds: g.durationSeconds ?? undefined,
          webhookUrl,
        }),
      );
      const next = this.queue.pollJobId(generationId, started.attempt);
      await this.repo.setProviderJob(
        generationId,
        started.attempt,
        result.providerJobId,
        adapter.webhookKey?.(result.providerJobId) ?? result.providerJobId,
        next,
      );
      if (result.state && isFinished(result.state)) {
        // A synchronous provider (or one that answered at once): nothing to wait for.
        return this.finish(generationId, started.attempt, adapter, g.mediaType, result.state);
      }
      const delay = webhookUrl ? this.opts.webhookBackstopMs : this.pollDelay(result.pollAfterMs);
      await this.queue.poll(generationId, started.attempt, Math.min(delay, timeoutMs), next);
    } catch (err) {
      await this.attemptFailed(generationId, started.attempt, err);
    }
  }

  async poll(generationId: string, attemptNumber: number, once = false): Promise<void> {
    const found = await this.repo.findAttempt(generationId, attemptNumber);
    if (!found || found.generation.status !== "PROCESSING" || found.attempt.status !== "RUNNING")
      return;
    // An attempt inside a provider batch is driven by the batch's own status checks.
    if (found.attempt.batchId) return;
    const { generation, attempt } = found;
    const adapter = this.providers.get(attempt.provider);
    if (!adapter) {
      return this.attemptFailed(
        generationId,
        attemptNumber,
        new ProviderError(`provider ${attempt.provider} is not configured`, "NO_PROVIDER", true),
      );
    }
    if (!attempt.providerJobId) {
      // Submitted by a worker that died before recording the provider's job id.
      if (Date.now() - attempt.startedAt.getTime() > this.opts.staleMs) {
        await this.attemptFailed(
          generationId,
          attemptNumber,
          new ProviderError("attempt lost before submission completed", "ATTEMPT_LOST", true),
        );
      }
      return;
    }
    const model = this.catalog.get(generation.model);
    const timeoutMs = (model?.timeoutSeconds ?? 600) * 1000;
    const elapsed = Date.now() - attempt.startedAt.getTime();
    if (elapsed >= timeoutMs) {
      // Bounded: a provider that stopped answering must not hold up the next attempt long.
      const providerJobId = attempt.providerJobId;
      await withProviderDeadline(Math.min(CANCEL_TIMEOUT_MS, timeoutMs), () =>
        adapter.cancel(providerJobId),
      ).catch((err: unknown) =>
        this.logger.warn({ err, generationId }, "cancel after timeout failed"),
      );
      return this.attemptFailed(
        generationId,
        attemptNumber,
        new ProviderError(
          `no result from ${adapter.name} within ${timeoutMs / 1000} s`,
          ProviderErrorCode.Timeout,
          true,
        ),
      );
    }
    const next = once ? undefined : this.queue.pollJobId(generationId, attemptNumber);
    /** Queues the next status check; `noted` when the attempt already names it. */
    const schedule = async (hintMs: number | undefined, noted = false) => {
      if (!next) return;
      const base =
        this.opts.webhookBaseUrl && adapter.supportsWebhooks
          ? this.opts.webhookBackstopMs
          : this.pollDelay(hintMs, elapsed);
      if (!noted) await this.repo.notePoll(generationId, attemptNumber, next);
      await this.queue.poll(
        generationId,
        attemptNumber,
        Math.max(1, Math.min(base, timeoutMs - elapsed)),
        next,
      );
    };
    let state: ProviderJobState;
    try {
      const providerJobId = attempt.providerJobId;
      state = await withProviderDeadline(timeoutMs - elapsed, () =>
        adapter.getStatus(providerJobId),
      );
    } catch (err) {
      if (err instanceof ProviderError && !err.retryable)
        return this.attemptFailed(generationId, attemptNumber, err);
      // A failed status call says nothing about the job: ask again later.
      this.logger.warn({ err, generationId }, "status poll failed; polling again");
      return schedule(this.opts.pollMaxMs);
    }
    if (!isFinished(state)) {
      // One transaction records the progress and the check that comes next.
      const moved = await this.repo.touchProgress(
        generationId,
        attemptNumber,
        clampProgress(state.progress),
        next,
      );
      if (moved) {
        for (const g of [moved.generation, ...moved.followers]) await this.publish("PROGRESS", g);
      }
      return schedule(state.pollAfterMs, true);
    }
    // What was just read serves the success path, which would otherwise read it again.
    return this.finish(
      generationId,
      attemptNumber,
      adapter,
      generation.mediaType,
      state,
      toSnapshot(generation, [attempt]),
    );
  }

  /**
   * Ends an attempt with the provider's final state through the same paths as a polled job
   * (outputs stored, `repo.succeed` or a retry / `repo.failAttempt`): how batch results are
   * fanned out to their generations.
   */
  async settleAttempt(
    generationId: string,
    attemptNumber: number,
    provider: string,
    mediaType: MediaType,
    state: FinishedJobState,
  ): Promise<void> {
    const adapter = this.providers.get(provider);
    if (!adapter) {
      return this.attemptFailed(
        generationId,
        attemptNumber,
        new ProviderError(`provider ${provider} is not configured`, "NO_PROVIDER", true),
      );
    }
    return this.finish(generationId, attemptNumber, adapter, mediaType, state);
  }

  private async finish(
    generationId: string,
    attemptNumber: number,
    adapter: ProviderAdapter,
    mediaType: MediaType,
    state: FinishedJobState,
    /** The generation as the caller just read it; its attempts may be only this one. */
    known?: GenerationSnapshot,
  ): Promise<void> {
    switch (state.status) {
      case "succeeded":
        return this.succeeded(
          generationId,
          attemptNumber,
          adapter,
          mediaType,
          state.outputs,
          state.costUsd,
          known,
        );
      case "failed":
        return this.attemptFailed(generationId, attemptNumber, state.error);
      case "canceled":
        return this.attemptFailed(
          generationId,
          attemptNumber,
          new ProviderError("canceled by the provider", "PROVIDER_CANCELED", false),
        );
    }
  }

  private async succeeded(
    generationId: string,
    attemptNumber: number,
    adapter: ProviderAdapter,
    mediaType: MediaType,
    providerOutputs: ProviderOutput[],
    providerCost: number | undefined,
    known?: GenerationSnapshot,
  ): Promise<void> {
    // Only the finishing attempt of `current.attempts` is used below.
    const current = known ?? (await this.repo.findSnapshot(generationId));
    if (!current) return;
    let stored;
    let quality: QualityReport | null;
    try {
      const fetched = await this.outputs.fetchAll(providerOutputs);
      quality = await this.qualityGate(current, fetched);
      stored = await this.outputs.putAll(generationId, attemptNumber, fetched, mediaType);
    } catch (err) {
      return this.attemptFailed(generationId, attemptNumber, err);
    }
    const attempt = current.attempts.find((a) => a.number === attemptNumber);
    const cost = providerCost ?? this.catalogCost(current, attempt);
    // Keyed by the model that produced it: after a fallback, that is not the one asked for.
    const produced = { ...current, model: attempt?.model ?? current.model };
    const cacheKey = current.cacheMode === "BYPASS" ? null : exactCacheKey(produced);
    const finished = await this.repo.succeed(
      generationId,
      attemptNumber,
      stored,
      cost,
      cacheKey,
      quality,
    );
    if (!finished) return;
    if (attempt) await this.recordOutcome(attempt, null, null);
    const done = finished.generation;
    this.logger.info(
      { generationId, provider: adapter.name, costUsd: cost, attached: finished.followers.length },
      "generation succeeded",
    );
    if (cacheKey) {
      await this.cache
        .remember({ ...produced, generationId, cacheKey, completedAt: done.completedAt! })
        .catch((err: unknown) =>
          this.logger.warn({ err, generationId }, "result not stored in the cache"),
        );
    }
    for (const g of [done, ...finished.followers]) {
      observeFinished(this.metrics, g);
      await this.publish("SUCCEEDED", g);
      await this.notify(g, "SUCCEEDED");
    }
    await this.anomalies.observeSettled(done, produced.model, cost);
  }

  /**
   * The quality gate's report on an attempt's outputs, before anything is stored or charged.
   * Throws `QualityFailedError` (retryable: the next provider may do better) when they fail,
   * so a rejected output never reaches `repo.succeed` and never fills the cache.
   */
  private async qualityGate(
    g: GenerationSnapshot,
    outputs: FetchedOutput[],
  ): Promise<QualityReport | null> {
    if (!this.quality) return null;
    const report = await this.quality.inspect(outputs, {
      mediaType: g.mediaType,
      prompt: g.prompt,
      width: g.width,
      height: g.height,
      durationSeconds: g.durationSeconds,
    });
    this.metrics.recordQuality(g.model, report.score);
    if (!report.passed) throw new QualityFailedError(report);
    return report;
  }

  /** Records a failed attempt, then retries after a backoff or fails the generation. */
  private async attemptFailed(
    generationId: string,
    attemptNumber: number,
    err: unknown,
  ): Promise<void> {
    const error = toErrorInfo(err);
    if (!(err instanceof ProviderError)) {
      this.logger.error(
        { err, generationId, attempt: attemptNumber },
        "unexpected error in an attempt",
      );
    }
    const current = await this.repo.findSnapshot(generationId);
    if (!current) return;
    const attempt = current.attempts.find((a) => a.number === attemptNumber);
    // A model the provider does not (or no longer) serve is that pair's problem, not the
    // request's: skip the pair from now on and fall over to the rest of the chain.
    const modelGone =
      error.code === ProviderErrorCode.ModelNotFound || /deprecat/i.test(error.message);
    if (modelGone && attempt) {
      const route = this.catalog
        .get(attempt.model)
        ?.routes.find((r) => r.provider === attempt.provider);
      if (route) await this.availability.markUnavailable(route, error.message);
    }
    const final =
      !(error.retryable || modelGone) ||
      current.attempts.length >= this.opts.maxAttempts ||
      generationElapsedMs(current) > this.opts.maxTotalMs;
    const report = err instanceof QualityFailedError ? err.report : null;
    const finished = await this.repo.failAttempt(generationId, attemptNumber, error, final, report);
    if (!finished) return;
    const updated = finished.generation;
    if (attempt && !modelGone) await this.recordOutcome(attempt, err, error);
    this.metrics.error("attempt", error.code);
    this.logger.warn(
      { generationId, attempt: attemptNumber, code: error.code, final },
      "attempt failed",
    );
    if (final) return this.failed(finished);
    await this.publish("ATTEMPT_FAILED", updated);
    await this.queue.retry(
      generationId,
      attemptNumber + 1,
      updated.priority,
      // A 429's Retry-After pauses that provider (its circuit refuses it until then); the next
      // attempt may go elsewhere at once, and waits only if every provider is paused.
      backoffMs(attemptNumber, error.code === ProviderErrorCode.RateLimited ? null : err),
    );
  }

  private async failUnstarted(g: GenerationSnapshot, error: GenerationErrorInfo): Promise<void> {
    // Start an attempt only to have one to fail: the failure is then visible like any other.
    const started = await this.repo.startAttempt(g.id, "none", g.model);
    if (!started) return;
    const failed = await this.repo.failAttempt(g.id, started.attempt, error, true);
    if (failed) await this.failed(failed);
  }

  private async failed(finished: Finished): Promise<void> {
    for (const g of [finished.generation, ...finished.followers]) {
      observeFinished(this.metrics, g);
      await this.publish("FAILED", g);
      await this.notify(g, "FAILED");
    }
  }

  /** The user's callback, when one was given; its delivery is a job of its own. */
  private async notify(g: GenerationSnapshot, event: "SUCCEEDED" | "FAILED"): Promise<void> {
    await this.callbacks
      .notify(g, event)
      .catch((err: unknown) =>
        this.logger.error({ err, generationId: g.id }, "callback not enqueued"),
      );
  }

  /**
   * The next place to try: along the fallback chain from where the last attempt left off,
   * the first pair not marked unavailable whose circuit lets a call through. When circuits
   * refuse them all, how long until one may.
   */
  private async pickCandidate(
    g: GenerationSnapshot,
  ): Promise<{ candidate: Candidate } | { waitMs: number } | { none: true }> {
    const chain = fallbackChain(
      this.catalog,
      g.model,
      g.fallbackModels,
      (p) => Boolean(this.providers.get(p)),
      g.maxQuality ?? Infinity,
    );
    let waitMs: number | undefined;
    for (let i = 0; i < chain.length; i++) {
      const candidate = chain[(g.attempts.length + i) % chain.length]!;
      if (await this.availability.isUnavailable(candidate.route)) continue;
      const decision = await this.breaker.acquire(candidate.route.provider);
      if (decision.transition) await this.health.publish(decision.transition);
      if (decision.allowed) return { candidate };
      waitMs = Math.min(
        waitMs ?? Infinity,
        Math.max(100, decision.retryAfterMs ?? this.opts.pollMaxMs),
      );
    }
    return waitMs === undefined ? { none: true } : { waitMs };
  }

  /** Tells the provider's circuit how the attempt went. Bad input is not the provider's fault. */
  private async recordOutcome(
    attempt: { provider: string; startedAt: string; error: string | null },
    err: unknown,
    error: GenerationErrorInfo | null,
  ): Promise<void> {
    const userFault =
      error?.code === ProviderErrorCode.InvalidInput ||
      error?.code === ProviderErrorCode.ContentRefused;
    this.metrics.providerAttempt(
      attempt.provider,
      error === null,
      (Date.now() - Date.parse(attempt.startedAt)) / 1000,
    );
    const transition = await this.breaker
      .record(attempt.provider, {
        ok: error === null || userFault,
        latencyMs: Date.now() - Date.parse(attempt.startedAt),
        error: error && !userFault ? `${error.code}: ${error.message}` : undefined,
        rateLimited: error?.code === ProviderErrorCode.RateLimited,
        retryAfterMs: err instanceof ProviderError ? err.retryAfterMs : undefined,
      })
      .catch((e: unknown) => {
        this.logger.warn({ err: e, provider: attempt.provider }, "circuit breaker unavailable");
        return null;
      });
    if (transition) await this.health.publish(transition);
    await this.anomalies.observeAttempt(attempt.provider, error === null || userFault);
  }

  /**
   * Priced as the model that produced it (a fallback model may cost more or less), at the
   * price of the provider that served it. A model the catalog no longer shows keeps the
   * estimate the generation was accepted with. The batch discount is the provider's, for
   * requests sent through its batch API (whose results come priced); a BATCH generation that
   * ran as a request of its own paid the full price.
   */
  private catalogCost(
    g: GenerationSnapshot,
    attempt?: { model: string; provider: string },
  ): number {
    const model = this.catalog.get(attempt?.model ?? g.model);
    if (!model) return g.estimatedCostUsd;
    return estimateCost(model, {
      width: g.width ?? undefined,
      height: g.height ?? undefined,
      durationSeconds: g.durationSeconds ?? undefined,
      priority: g.priority === "BATCH" ? "STANDARD" : g.priority,
      provider: attempt?.provider,
    }).estimatedCostUsd;
  }

  private pollDelay(hint: number | undefined, elapsedMs = 0): number {
    return pollDelayMs(hint, elapsedMs, this.opts.pollMinMs, this.opts.pollMaxMs);
  }

  private async publish(
    type: Parameters<GenerationEvents["publish"]>[0],
    g: GenerationSnapshot,
  ): Promise<void> {
    await this.events
      .publish(type, g)
      .catch((err: unknown) => this.logger.error({ err, generationId: g.id }, "publish failed"));
  }
}

function toErrorInfo(err: unknown): GenerationErrorInfo {
  if (err instanceof ProviderError)
    return { code: err.code, message: err.message, retryable: err.retryable };
  return { code: "INTERNAL_ERROR", message: "unexpected error while processing", retryable: true };
}

/**
 * The time a generation has used of `maxTotalMs` (MAX_GENERATION_SECONDS). A provider batch
 * runs to its own deadline (up to 24 h at OpenAI), so for a generation that went through one
 * the clock starts when its batch attempt ended: its wait in BATCHED and in the batch are not
 * counted, and the requests that follow a failed batch item get the whole time.
 */
export function generationElapsedMs(
  g: Pick<GenerationSnapshot, "createdAt" | "attempts">,
  now = Date.now(),
): number {
  let start = Date.parse(g.createdAt);
  for (const a of g.attempts) {
    if (a.batchId) start = Math.max(start, a.endedAt ? Date.parse(a.endedAt) : now);
  }
  return Math.max(0, now - start);
}

/** Exponential backoff with full jitter, honouring a provider's Retry-After (capped at 60 s). */
export function backoffMs(attempt: number, err: unknown, baseMs = 500, capMs = 10_000): number {
  if (err instanceof ProviderError && err.retryAfterMs !== undefined)
    return Math.min(err.retryAfterMs, 60_000);
  return Math.round(Math.random() * Math.min(capMs, baseMs * 2 ** (attempt - 1)));
}

/**
 * The provider's hint when it gives one; otherwise polls back off with the job's age (a fifth
 * of the time it has run), so a long job costs a few dozen status calls, not thousands.
 */
export function pollDelayMs(
  hint: number | undefined,
  elapsedMs: number,
  minMs: number,
  maxMs: number,
): number {
  return Math.min(maxMs, Math.max(minMs, hint ?? elapsedMs / 5));
}
