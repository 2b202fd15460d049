import type {
  BatchObservableResult,
  Counter,
  Histogram,
  Meter,
  ObservableGauge,
  UpDownCounter,
} from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import type { GenerationStatus } from "../entities";
import type { GenerationSnapshot } from "../generation/generation.events";

/** How a cache lookup is made; the values of the GraphQL `CacheHitKind`. */
export const CACHE_KINDS = ["EXACT", "SEMANTIC", "INFLIGHT"] as const;
export type CacheKind = (typeof CACHE_KINDS)[number];

/** The statuses a generation can have when it is created (a cache hit is born SUCCEEDED). */
export const CREATION_STATUSES = [
  "QUEUED",
  "BATCHED",
  "SUCCEEDED",
] as const satisfies readonly GenerationStatus[];
export type CreationStatus = (typeof CREATION_STATUSES)[number];

/**
 * The label value a closed label gets when a caller passes something outside its set. Types
 * make that impossible without a cast; at run time the observation is still counted, under
 * this value, so a miswired caller shows on the dashboard instead of failing a request or
 * growing the series count.
 */
export const OTHER = "other";

/**
 * 0.1 ms to 100 ms: an exact lookup is one Redis GET (or a map read, embedded), a semantic one
 * adds an embedding and a pgvector query. Slower than 100 ms lands in +Inf and is an incident.
 */
export const CACHE_LOOKUP_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/** How a generation ended; CANCELED is the caller's doing, counted apart from FAILED. */
export const FINAL_STATUSES = [
  "SUCCEEDED",
  "FAILED",
  "CANCELED",
] as const satisfies readonly GenerationStatus[];
export type FinalStatus = (typeof FINAL_STATUSES)[number];

export const PRIORITIES = ["INTERACTIVE", "STANDARD", "BATCH"] as const;
export type PriorityLabel = (typeof PRIORITIES)[number];

/** Where an error was counted: a client-facing GraphQL error, or a failed provider attempt. */
export const ERROR_SOURCES = ["graphql", "attempt"] as const;
export type ErrorSource = (typeof ERROR_SOURCES)[number];

/** Queue step states, as `gengate_queue_jobs` reports them. */
export const QUEUE_STATES = ["waiting", "active", "delayed"] as const;

/** The provider label of a generation no provider served: a cache hit, or none at all. */
export const PROVIDER_CACHE = "cache";
export const PROVIDER_NONE = "none";

/**
 * 5 ms to 10 min: a queue wait is a few ms with idle workers, and minutes when a burst of
 * BATCH or STANDARD work waits behind INTERACTIVE.
 */
export const QUEUE_WAIT_BUCKETS_SECONDS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
];
/** 100 ms to 30 min: an image takes seconds, a video minutes; MAX_GENERATION_SECONDS is 15 min. */
export const DURATION_BUCKETS_SECONDS = [
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800,
];
/** A tenth of a cent to 10 USD: one image to a long video. */
export const COST_BUCKETS_USD = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Quality scores are 0..1. */
export const QUALITY_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];

/** A cap on `gengate_budget_remaining_usd` series: the accounts closest to their limit. */
export const BUDGET_GAUGE_ACCOUNTS = 100;

/**
 * What the service-wide gauges read at scrape time. Every process sees the same values (they
 * come from Redis and Postgres), so only api processes export them: see {@link Metrics.watchGlobal}.
 */
export interface GlobalGaugeSource {
  /** Queue steps by state, and the waiting ones by priority. */
  queueDepth(): Promise<{
    waiting: number;
    active: number;
    delayed: number;
    byPriority: Record<PriorityLabel, number>;
  }>;
  /** Every configured provider and whether its circuit is open now. */
  circuits(): Promise<Array<{ provider: string; open: boolean }>>;
  /** Accounts with an account-wide limit this month, the `limit` closest to it first. */
  budgetRemaining(limit: number): Promise<Array<{ accountId: string; remainingUsd: number }>>;
}

/** The recording side of {@link Metrics}: what services receive. */
export interface MetricsRecorder {
  /** One cache lookup of `kind`, its outcome and how long it took. */
  cacheLookup(kind: CacheKind, hit: boolean, seconds: number): void;
  /** Provider spend a cache hit of `kind` avoided: the estimate of the request it served. */
  cacheSaved(kind: CacheKind, usd: number): void;
  /** A generation row was created, with its status at creation and whether a cache served it. */
  generationCreated(model: string, status: CreationStatus, cached: boolean): void;
  /**
   * A generation reached a final status. `provider` served it (`cache` for a hit, `none` when
   * no provider was reached); `seconds` is its creation to completion; `costUsd` what it cost.
   */
  generationFinished(f: {
    model: string;
    provider: string;
    status: FinalStatus;
    cached: boolean;
    seconds?: number;
    costUsd?: number | null;
  }): void;
  /** An error by its stable code (a GraphQL `extensions.code`, or a provider attempt's code). */
  error(source: ErrorSource, code: string): void;
  /** Time a generation waited in the queue before a worker started its first attempt. */
  queueWait(priority: string, seconds: number): void;
  /** One provider attempt, submit to result or failure. */
  providerAttempt(provider: string, ok: boolean, seconds: number): void;
  /** The output quality score (0..1) of a generation of `model`. */
  recordQuality(model: string, score: number): void;
  /**
   * Subscription events' results: `executed` for an operation, and `shared` (handed to another
   * operation with the same selection, variables and viewer instead of executing it again).
   */
  subscriptionResults(executed: number, shared: number): void;
}

export interface MetricsOptions {
  /** Told when a collection reports errors; the scrape still returns what was collected. */
  onCollectionErrors?: (errors: unknown[]) => void;
}

/**
 * The process's metrics, exposed in the Prometheus text format.
 *
 * Every instance owns its own `MeterProvider` and registers nothing globally, so several apps
 * in one process (tests) keep separate counts. Labels are bounded by construction: `kind`,
 * `result`, `status` and `cached` are closed sets; `model` is the resolved catalog name,
 * which generate has validated before any generation exists, so the catalog bounds it
 * (past 2000 series per metric the SDK folds the rest into one series labelled
 * `otel_metric_overflow`).
 * Nothing derived from a user, a prompt or an id is ever a label.
 *
 * | name                            | type      | labels                      |
 * | ------------------------------- | --------- | --------------------------- |
 * | `gengate_cache_lookups_total`   | counter   | `kind`, `result`            |
 * | `gengate_cache_saved_usd_total` | counter   | `kind`                      |
 * | `gengate_generations_total`     | counter   | `model`, `status`, `cached` |
 * | `gengate_cache_lookup_seconds`  | histogram | `kind`                      |
 *
 * and the rest listed in the README's Metrics section, with how to aggregate each across
 * processes: counters, histograms and per-process gauges add up; the global gauges (queue,
 * circuits, budgets) are exported by api processes only and are the same in each of them.
 */
export class Metrics implements MetricsRecorder {
  private readonly provider: MeterProvider;
  private readonly reader: PrometheusExporter;
  // Neither an `otel_scope_name` label on every series (there is one meter) nor a
  // `target_info` series: Prometheus' own `job` and `instance` labels say where series come from.
  private readonly serializer = new PrometheusSerializer(undefined, false, undefined, true, true);
  private readonly onCollectionErrors: (errors: unknown[]) => void;

  private readonly cacheLookups: Counter<{ kind: string; result: "hit" | "miss" }>;
  private readonly cacheSavedUsd: Counter<{ kind: string }>;
  private readonly generationsCreated: Counter<{
    model: string;
    status: string;
    cached: "true" | "false";
  }>;
  private readonly cacheLookupSeconds: Histogram<{ kind: string }>;
  private readonly generationsFinished: Counter<{
    model: string;
    provider: string;
    status: string;
    cached: "true" | "false";
  }>;
  private readonly errors: Counter<{ source: string; code: string }>;
  private readonly subscriptionResultCounter: Counter<{ shared: "true" | "false" }>;
  private readonly queueWaitSeconds: Histogram<{ priority: string }>;
  private readonly providerSeconds: Histogram<{ provider: string; outcome: "ok" | "error" }>;
  private readonly generationSeconds: Histogram<{ model: string; status: string }>;
  private readonly generationCostUsd: Histogram<{ model: string; provider: string }>;
  private readonly qualityScore: Histogram<{ model: string }>;
  private readonly jobsInFlight: UpDownCounter;
  private webSockets: (() => { connections: number; subscriptions: number }) | undefined;
  private readonly meter: Meter;
  private watchingGlobal = false;

  constructor(options: MetricsOptions = {}) {
    this.onCollectionErrors = options.onCollectionErrors ?? (() => undefined);
    // The exporter is only a reader here: our express app serves the text.
    this.reader = new PrometheusExporter({ preventServerStart: true });
    this.provider = new MeterProvider({ readers: [this.reader] });
    const meter: Meter = this.provider.getMeter("gengate");
    this.meter = meter;

    // The Prometheus exporter appends `_total` to monotonic counters: the instrument names
    // leave it out so the exposed names come out exactly as documented.
    this.cacheLookups = meter.createCounter("gengate_cache_lookups", {
      description: "Cache lookups by kind (EXACT, SEMANTIC, INFLIGHT) and result (hit, miss).",
    });
    this.cacheSavedUsd = meter.createCounter("gengate_cache_saved_usd", {
      description: "Estimated provider spend avoided by cache hits, in US dollars, by kind.",
    });
    this.generationsCreated = meter.createCounter("gengate_generations", {
      description:
        "Generations created, by catalog model, status at creation and whether a cache served them.",
    });
    this.cacheLookupSeconds = meter.createHistogram("gengate_cache_lookup_seconds", {
      description: "Duration of cache lookups by kind, in seconds.",
      unit: "s",
      advice: { explicitBucketBoundaries: CACHE_LOOKUP_BUCKETS_SECONDS },
    });
    this.generationsFinished = meter.createCounter("gengate_generations_finished", {
      description:
        "Generations that reached a final status, by model, provider (cache, none), status and cached.",
    });
    this.errors = meter.createCounter("gengate_errors", {
      description: "Errors by source (graphql, attempt) and stable code.",
    });
    this.subscriptionResultCounter = meter.createCounter("gengate_subscription_results", {
      description:
        "Subscription events' results, one per operation, by whether another operation's execution was shared.",
    });
    this.queueWaitSeconds = meter.createHistogram("gengate_queue_wait_seconds", {
      description: "Time from creation to the first attempt, by priority, in seconds.",
      unit: "s",
      advice: { explicitBucketBoundaries: QUEUE_WAIT_BUCKETS_SECONDS },
    });
    this.providerSeconds = meter.createHistogram("gengate_provider_seconds", {
      description: "Duration of provider attempts by provider and outcome, in seconds.",
      unit: "s",
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_SECONDS },
    });
    this.generationSeconds = meter.createHistogram("gengate_generation_seconds", {
      description: "Creation to final status of generations, by model and status, in seconds.",
      unit: "s",
      advice: { explicitBucketBoundaries: DURATION_BUCKETS_SECONDS },
    });
    this.generationCostUsd = meter.createHistogram("gengate_generation_cost_usd", {
      description: "Cost of succeeded generations by model and provider, in US dollars.",
      advice: { explicitBucketBoundaries: COST_BUCKETS_USD },
    });
    this.qualityScore = meter.createHistogram("gengate_quality_score", {
      description: "Output quality scores (0..1) by model.",
      advice: { explicitBucketBoundaries: QUALITY_BUCKETS },
    });
    this.jobsInFlight = meter.createUpDownCounter("gengate_jobs_in_flight", {
      description: "Queue steps this process is running now.",
    });
    const wsConnections = meter.createObservableGauge("gengate_websocket_connections", {
      description: "Open (acknowledged) graphql-ws connections on this process.",
    });
    const wsSubscriptions = meter.createObservableGauge("gengate_websocket_subscriptions", {
      description: "Active graphql-ws operations (subscriptions) on this process.",
    });
    // Read from the server's own state at each scrape: counting opens and closes would drift
    // on the paths where graphql-ws calls one hook and not the other.
    meter.addBatchObservableCallback(
      (result) => {
        const now = this.webSockets?.();
        if (!now) return;
        result.observe(wsConnections, now.connections);
        result.observe(wsSubscriptions, now.subscriptions);
      },
      [wsConnections, wsSubscriptions],
    );
  }

  /**
   * Exports the service-wide gauges, read from `source` at every scrape. Call it in api
   * processes only: every process would report the same values, and summed over workers they
   * would count the queue several times. Across api replicas take `max`.
   */
  watchGlobal(source: GlobalGaugeSource): void {
    if (this.watchingGlobal) throw new Error("global gauges are already watched");
    this.watchingGlobal = true;
    const m = this.meter;
    const depth = m.createObservableGauge("gengate_queue_depth", {
      description: "Queue steps waiting to run, by priority (service-wide).",
    });
    const jobs = m.createObservableGauge("gengate_queue_jobs", {
      description: "Queue steps by state: waiting, active, delayed (service-wide).",
    });
    const circuits = m.createObservableGauge("gengate_circuit_open", {
      description: "1 while the provider's circuit is open, else 0 (service-wide).",
    });
    const budgets = m.createObservableGauge("gengate_budget_remaining_usd", {
      description: `Account-wide budget left this month, the ${BUDGET_GAUGE_ACCOUNTS} accounts closest to their limit (service-wide).`,
    });
    const observable: ObservableGauge[] = [depth, jobs, circuits, budgets];
    m.addBatchObservableCallback(async (result: BatchObservableResult) => {
      // One failing source must not hide the others: each is read on its own.
      const [q, c, b] = await Promise.allSettled([
        source.queueDepth(),
        source.circuits(),
        source.budgetRemaining(BUDGET_GAUGE_ACCOUNTS),
      ]);
      if (q.status === "fulfilled") {
        for (const p of PRIORITIES)
          result.observe(depth, q.value.byPriority[p] ?? 0, { priority: p });
        for (const state of QUEUE_STATES) result.observe(jobs, q.value[state], { state });
      }
      if (c.status === "fulfilled") {
        for (const { provider, open } of c.value)
          result.observe(circuits, open ? 1 : 0, { provider });
      }
      if (b.status === "fulfilled") {
        for (const { accountId, remainingUsd } of b.value)
          result.observe(budgets, remainingUsd, { account: accountId });
      }
      const failed = [q, c, b].filter((r) => r.status === "rejected");
      if (failed.length)
        this.onCollectionErrors(failed.map((r) => (r as PromiseRejectedResult).reason));
    }, observable);
  }

  cacheLookup(kind: CacheKind, hit: boolean, seconds: number): void {
    const k = closed(CACHE_KINDS, kind);
    this.cacheLookups.add(1, { kind: k, result: hit ? "hit" : "miss" });
    if (isAmount(seconds)) this.cacheLookupSeconds.record(seconds, { kind: k });
  }

  cacheSaved(kind: CacheKind, usd: number): void {
    if (isAmount(usd)) this.cacheSavedUsd.add(usd, { kind: closed(CACHE_KINDS, kind) });
  }

  generationCreated(model: string, status: CreationStatus, cached: boolean): void {
    this.generationsCreated.add(1, {
      model,
      status: closed(CREATION_STATUSES, status),
      cached: cached ? "true" : "false",
    });
  }

  generationFinished(f: {
    model: string;
    provider: string;
    status: FinalStatus;
    cached: boolean;
    seconds?: number;
    costUsd?: number | null;
  }): void {
    const status = closed(FINAL_STATUSES, f.status);
    this.generationsFinished.add(1, {
      model: f.model,
      provider: f.provider,
      status,
      cached: f.cached ? "true" : "false",
    });
    if (f.seconds !== undefined && isAmount(f.seconds))
      this.generationSeconds.record(f.seconds, { model: f.model, status });
    if (status === "SUCCEEDED" && !f.cached && f.costUsd != null && isAmount(f.costUsd))
      this.generationCostUsd.record(f.costUsd, { model: f.model, provider: f.provider });
  }

  error(source: ErrorSource, code: string): void {
    this.errors.add(1, { source: closed(ERROR_SOURCES, source), code: errorCode(code) });
  }

  subscriptionResults(executed: number, shared: number): void {
    if (executed > 0) this.subscriptionResultCounter.add(executed, { shared: "false" });
    if (shared > 0) this.subscriptionResultCounter.add(shared, { shared: "true" });
  }

  queueWait(priority: string, seconds: number): void {
    if (isAmount(seconds))
      this.queueWaitSeconds.record(seconds, {
        priority: closed(PRIORITIES, priority as PriorityLabel),
      });
  }

  providerAttempt(provider: string, ok: boolean, seconds: number): void {
    if (isAmount(seconds))
      this.providerSeconds.record(seconds, { provider, outcome: ok ? "ok" : "error" });
  }

  recordQuality(model: string, score: number): void {
    if (Number.isFinite(score) && score >= 0 && score <= 1)
      this.qualityScore.record(score, { model });
  }

  /** A queue step started (+1) or ended (-1) on this process. */
  jobRunning(delta: 1 | -1): void {
    this.jobsInFlight.add(delta);
  }

  /** The WebSocket server's open connections and operations, read at every scrape. */
  watchWebSockets(read: () => { connections: number; subscriptions: number }): void {
    this.webSockets = read;
  }

  /** Everything recorded so far, cumulative since start, in the Prometheus text format 0.0.4. */
  async prometheusText(): Promise<string> {
    const { resourceMetrics, errors } = await this.reader.collect();
    if (errors.length) this.onCollectionErrors(errors);
    return this.serializer.serialize(resourceMetrics);
  }

  /** Stops collection; later recordings are dropped. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

function closed<T extends string>(allowed: readonly T[], value: T): T | typeof OTHER {
  return allowed.includes(value) ? value : OTHER;
}

/** Records nothing: for services built without metrics (unit tests). */
/**
 * A generation that reached a final status, as `gengate_generations_finished_total` and the
 * end-to-end and cost histograms count it. Served by a cache (or attached to an identical
 * running generation): provider `cache`; never reached a provider: `none`.
 */
export function observeFinished(
  metrics: MetricsRecorder,
  g: Pick<
    GenerationSnapshot,
    "model" | "provider" | "status" | "cached" | "costUsd" | "createdAt" | "completedAt"
  >,
): void {
  if (g.status !== "SUCCEEDED" && g.status !== "FAILED" && g.status !== "CANCELED") return;
  const end = g.completedAt ? Date.parse(g.completedAt) : Date.now();
  metrics.generationFinished({
    model: g.model,
    provider: g.cached ? PROVIDER_CACHE : (g.provider ?? PROVIDER_NONE),
    status: g.status,
    cached: g.cached,
    seconds: (end - Date.parse(g.createdAt)) / 1000,
    costUsd: g.costUsd,
  });
}

/**
 * Error codes are SCREAMING_SNAKE constants (`BUDGET_EXCEEDED`, `PROVIDER_TIMEOUT`); anything
 * else (a message passed by mistake) is `other`, so the label set stays bounded.
 */
function errorCode(code: string): string {
  return /^[A-Z][A-Z0-9_]{0,47}$/.test(code) ? code : OTHER;
}

/** Negative, NaN or infinite amounts would corrupt a counter or a histogram sum: skip them. */
function isAmount(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}
