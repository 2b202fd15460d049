import type { Logger } from "../common/logger";
import type { AdmissionControl } from "../routing/admission";
import { ForbiddenError, NotFoundError, BadInputError } from "../common/errors";
import { generationScope, requireViewer, type Viewer } from "../auth/viewer";
import { isUuid, validateUserId } from "../auth/auth.service";
import type { ModelCatalog, ModelDefinition } from "../cost/model-catalog";
import { estimateCost, worstCaseCost, type CostEstimate } from "../cost/cost-estimator";
import { fallbackChain } from "../routing/fallback-chain";
import { traceCarrier } from "../observability/tracing";
import type { ProviderRegistry } from "../providers";
import type { GenerationEvents, GenerationSnapshot } from "./generation.events";
import type { GenerateRequest } from "./generation.input";
import type { GenerationQueue } from "./generation.queue";
import type { GenerationRepository, NewGeneration } from "./generation.repository";
import type { CacheService, LookupRequest } from "../cache/cache.service";
import { observeFinished, type MetricsRecorder } from "../observability";
import type { AlertRow } from "../cost/budget.repository";
import type { Tier } from "../entities";
import { validateGenerateRequest } from "./generation.validator";
import type { PassRates } from "../quality/pass-rates";

export const MAX_PAGE_SIZE = 100;

/** What the api needs of user callbacks: a URL check when one is given, and the notice. */
export interface CallbackGate {
  /** Throws `BadInputError` for a URL that may not be called (SSRF), DNS included. */
  check(url: string): Promise<void>;
  notify(g: GenerationSnapshot, event: "SUCCEEDED" | "FAILED" | "CANCELED"): Promise<unknown>;
}
export const DEFAULT_PAGE_SIZE = 20;

export interface GenerationPage {
  nodes: GenerationSnapshot[];
  hasNextPage: boolean;
  endCursor: string | null;
  totalCount: number;
}

export interface CostQuote extends CostEstimate {
  model: string;
  estimatedSeconds: number;
}

/** The api side of the lifecycle: accept, look up, list and cancel generations. */
export class GenerationService {
  private readonly latencyCache = new Map<string, { seconds: number; at: number }>();

  constructor(
    private readonly repo: GenerationRepository,
    private readonly queue: GenerationQueue,
    private readonly events: GenerationEvents,
    private readonly catalog: ModelCatalog,
    private readonly providers: ProviderRegistry,
    private readonly callbacks: CallbackGate,
    private readonly admission: AdmissionControl,
    private readonly cache: CacheService,
    private readonly metrics: MetricsRecorder,
    /** Publishes the budget warnings a reservation raised. */
    private readonly alerts: { raised(alerts: AlertRow[]): Promise<void> },
    /** End users' tiers, and the tier of one not seen yet. */
    private readonly tiers: {
      tierOf(accountId: string, userId: string): Promise<Tier | null>;
      defaultTier: Tier;
    },
    private readonly logger: Logger,
    /** Recent quality pass rates per model, for selection by cost per accepted output. */
    private readonly passRates?: PassRates,
  ) {}

  async generate(viewer: Viewer | null, input: GenerateRequest): Promise<GenerationSnapshot> {
    const v = requireViewer(viewer);
    const userId = this.userFor(v, input.userId);
    // The tier bounds which models the user may have (FREE: the cheapest class).
    const tier = (await this.tiers.tierOf(v.accountId, userId)) ?? this.tiers.defaultTier;
    const req = validateGenerateRequest(this.catalog, input, userId, tier, this.passRates);
    if (req.params.callbackUrl) await this.callbacks.check(req.params.callbackUrl);
    await this.admission.admitRequest(v);
    const request = {
      model: req.model.name,
      mediaType: req.mediaType,
      prompt: req.prompt,
      negativePrompt: req.negativePrompt,
      width: req.params.width,
      height: req.params.height,
      durationSeconds: req.params.durationSeconds,
      seed: req.seed,
    };
    const cacheKey = req.cacheMode === "BYPASS" ? null : this.cache.keyFor(request);
    const row = {
      accountId: v.accountId,
      userId,
      mediaType: req.mediaType,
      prompt: req.prompt,
      negativePrompt: req.negativePrompt,
      model: req.model.name,
      seed: req.seed,
      priority: req.priority,
      params: req.params,
      idempotencyKey: req.idempotencyKey,
      requestHash: req.requestHash,
      cacheKey,
      inflightKey: req.cacheMode === "DEFAULT" ? cacheKey : null,
      traceContext: traceCarrier() ?? null,
    };
    if (req.cacheMode === "DEFAULT") {
      const served = await this.serveFromCache(
        { ...request, accountId: v.accountId, seedGiven: req.seedGiven, cacheKey: cacheKey! },
        { ...row, estimatedCostUsd: 0, estimatedSeconds: 0 },
      );
      if (served) return served;
    }
    await this.admission.admitToQueue(req.priority);
    const quote = await this.quote(req.model, req.params, req.priority);
    const batched = req.priority === "BATCH";
    const chain = fallbackChain(
      this.catalog,
      req.model.name,
      req.params.fallbackModels,
      () => true,
      req.params.maxQuality ?? Infinity,
    );
    const outcome = await this.repo.createQueued(
      {
        ...row,
        estimatedCostUsd: quote.estimatedCostUsd,
        estimatedSeconds: quote.estimatedSeconds,
        reserveUsd: Math.max(quote.estimatedCostUsd, worstCaseCost(chain, req.params)),
      },
      this.cache.ttlMs,
      batched ? "BATCHED" : "QUEUED",
    );
    if (!outcome.created) return outcome.generation;
    const generation = outcome.generation;
    if (outcome.alerts.length > 0) await this.alerts.raised(outcome.alerts);
    if (row.inflightKey) this.metrics.cacheLookup("INFLIGHT", outcome.served === "INFLIGHT", 0);
    this.metrics.generationCreated(
      generation.model,
      generation.status as "QUEUED" | "BATCHED",
      generation.cached,
    );
    if (outcome.served === "EXACT") {
      observeFinished(this.metrics, generation);
      await this.finishedAtOnce(generation, row.params.callbackUrl !== undefined);
      return generation;
    }
    if (outcome.served === "QUEUED") {
      try {
        // A BATCHED row waits for the collector: this wakes it to count the group again.
        if (batched) await this.queue.collectBatches(generation.id);
        else await this.queue.submit(generation.id, generation.priority);
      } catch (err) {
        // The row is the source of truth: the reconciler enqueues it once the queue is back.
        this.logger.error(
          { err, generationId: generation.id },
          "enqueue failed; left to the reconciler",
        );
      }
    }
    await this.publish("QUEUED", generation);
    return generation;
  }

  /** An exact or semantic hit, stored as a finished generation; null on a miss. */
  private async serveFromCache(
    lookup: LookupRequest & { cacheKey: string },
    row: NewGeneration,
  ): Promise<GenerationSnapshot | null> {
    const hit = await this.cache.lookup(lookup);
    if (!hit) return null;
    const served = await this.repo.createCached(
      row,
      { kind: hit.kind, similarity: hit.similarity, sourceGenerationId: hit.sourceGenerationId },
      this.cache.ttlMs,
    );
    if (!served) {
      // The index pointed at a result that may no longer be served (purged or expired).
      if (hit.kind === "EXACT") await this.cache.forgetKeys([lookup.cacheKey]);
      else await this.cache.forgetSemantic({ generationId: hit.sourceGenerationId });
      return null;
    }
    if (served.created) {
      this.metrics.generationCreated(served.generation.model, "SUCCEEDED", true);
      this.metrics.cacheSaved(served.generation.cacheHit?.kind ?? hit.kind, served.savedUsd);
      observeFinished(this.metrics, served.generation);
      await this.finishedAtOnce(served.generation, row.params.callbackUrl !== undefined);
    }
    return served.generation;
  }

  private async finishedAtOnce(generation: GenerationSnapshot, callback: boolean): Promise<void> {
    // The caller has the result in the response: subscribers' copy need not hold it up
    // (`publish` logs its own failures).
    void this.publish("SUCCEEDED", generation);
    if (!callback) return;
    await this.callbacks
      .notify(generation, "SUCCEEDED")
      .catch((err: unknown) =>
        this.logger.error({ err, generationId: generation.id }, "callback not enqueued"),
      );
  }

  async estimate(viewer: Viewer | null, input: GenerateRequest): Promise<CostQuote> {
    const v = requireViewer(viewer);
    const userId = v.role === "CLIENT" ? v.userId! : (input.userId ?? null);
    const known = userId !== null ? await this.tiers.tierOf(v.accountId, userId) : null;
    const req = validateGenerateRequest(
      this.catalog,
      input,
      userId,
      known ?? this.tiers.defaultTier,
      this.passRates,
    );
    return this.quote(req.model, req.params, req.priority);
  }

  async get(viewer: Viewer | null, id: string): Promise<GenerationSnapshot | null> {
    const v = requireViewer(viewer);
    if (!isUuid(id)) return null;
    return this.repo.findSnapshot(id, generationScope(v));
  }

  async list(
    viewer: Viewer | null,
    args: {
      first?: number | null;
      after?: string | null;
      status?: string | null;
      userId?: string | null;
      accountId?: string | null;
    },
  ): Promise<GenerationPage> {
    const v = requireViewer(viewer);
    const first = args.first ?? DEFAULT_PAGE_SIZE;
    if (!Number.isInteger(first) || first < 1 || first > MAX_PAGE_SIZE) {
      throw new BadInputError("first", `must be an integer from 1 to ${MAX_PAGE_SIZE}`);
    }
    if (args.accountId != null && v.role !== "ADMIN")
      throw new ForbiddenError("Only ADMIN may name an account");
    if (args.accountId != null && !isUuid(args.accountId))
      throw new BadInputError("accountId", "must be a UUID");
    if (args.userId != null) validateUserId(args.userId);
    if (v.role === "CLIENT" && args.userId != null && args.userId !== v.userId) {
      throw new ForbiddenError("A client token sees its own user only");
    }
    const scope = generationScope(v, args.accountId ?? undefined);
    const page = await this.repo.list(scope, {
      first,
      after: args.after ? decodeCursor(args.after) : undefined,
      status: args.status ?? undefined,
      userId: args.userId ?? undefined,
    });
    const last = page.nodes[page.nodes.length - 1];
    return { ...page, endCursor: last ? encodeCursor(last) : null };
  }

  async cancel(viewer: Viewer | null, id: string): Promise<GenerationSnapshot> {
    const v = requireViewer(viewer);
    if (v.role === "CLIENT" && !v.canGenerate)
      throw new ForbiddenError("This client token cannot cancel");
    const scope = generationScope(v);
    const existing = isUuid(id) ? await this.repo.findSnapshot(id, scope) : null;
    if (!existing) throw new NotFoundError("No such generation");
    const result = await this.repo.cancel(id);
    if (!result) return (await this.repo.findSnapshot(id, scope)) ?? existing;
    await this.queue
      .removeSubmit(id)
      .catch((err: unknown) => this.logger.warn({ err }, "queue remove failed"));
    if (result.running?.providerJobId) {
      const adapter = this.providers.get(result.running.provider);
      await adapter
        ?.cancel(result.running.providerJobId)
        .catch((err: unknown) =>
          this.logger.warn({ err, generationId: id }, "provider cancel failed"),
        );
    }
    observeFinished(this.metrics, result.generation);
    await this.publish("CANCELED", result.generation);
    if (result.promoted) {
      // Requests attached to the canceled one still want their result: one of them runs now.
      await this.queue
        .submit(result.promoted.id, result.promoted.priority)
        .catch((err: unknown) =>
          this.logger.error({ err, generationId: result.promoted!.id }, "enqueue failed"),
        );
      await this.publish("QUEUED", result.promoted);
    }
    await this.callbacks
      .notify(result.generation, "CANCELED")
      .catch((err: unknown) =>
        this.logger.error({ err, generationId: id }, "callback not enqueued"),
      );
    return result.generation;
  }

  queuePosition(generation: GenerationSnapshot): Promise<number | null> {
    return generation.status === "QUEUED"
      ? this.repo.queuePosition(generation.id)
      : Promise.resolve(null);
  }

  private userFor(v: Viewer, requested: string | null | undefined): string {
    if (v.role === "CLIENT") {
      if (!v.canGenerate)
        throw new ForbiddenError("This client token may watch generations, not create them");
      if (requested != null && requested !== v.userId) {
        throw new ForbiddenError("A client token acts for its own user only");
      }
      return v.userId!;
    }
    if (requested == null) throw new BadInputError("userId", "is required with an API key");
    validateUserId(requested);
    return requested;
  }

  private async quote(
    model: ModelDefinition,
    params: { width?: number; height?: number; durationSeconds?: number },
    priority: GenerateRequest["priority"] & string,
  ): Promise<CostQuote> {
    const estimate = estimateCost(model, { ...params, priority });
    return { ...estimate, model: model.name, estimatedSeconds: await this.estimatedSeconds(model) };
  }

  /** Recent observed median for the model, refreshed at most every 30 s; the catalog's guess before that. */
  private async estimatedSeconds(model: ModelDefinition): Promise<number> {
    const cached = this.latencyCache.get(model.name);
    if (cached && Date.now() - cached.at < 30_000) return cached.seconds;
    const observed = await this.repo.recentDurationSeconds(model.name);
    const seconds =
      Math.round((observed && observed.n >= 5 ? observed.seconds : model.typicalSeconds) * 100) /
      100;
    this.latencyCache.set(model.name, { seconds, at: Date.now() });
    return seconds;
  }

  private async publish(
    type: "QUEUED" | "CANCELED" | "SUCCEEDED",
    generation: GenerationSnapshot,
  ): Promise<void> {
    await this.events
      .publish(type, generation)
      .catch((err: unknown) =>
        this.logger.error({ err, generationId: generation.id }, "publish failed"),
      );
  }
}

export function encodeCursor(g: Pick<GenerationSnapshot, "createdAt" | "id">): string {
  return Buffer.from(JSON.stringify([g.createdAt, g.id])).toString("base64url");
}

export function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as [
      string,
      string,
    ];
    // Only the exact form encodeCursor writes, which Postgres can always read back.
    if (typeof createdAt !== "string" || typeof id !== "string" || !isUuid(id)) throw new Error();
    const date = new Date(createdAt);
    if (Number.isNaN(date.getTime()) || date.toISOString() !== createdAt) throw new Error();
    return { createdAt, id };
  } catch {
    throw new BadInputError("after", "is not a cursor returned by this API");
  }
}
