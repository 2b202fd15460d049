import type { Counter, Histogram, Meter } from "@opentelemetry/api";
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import type { GenerationStatus } from "../entities";

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

/** The recording side of {@link Metrics}: what services receive, so tests can pass a stub. */
export interface MetricsRecorder {
  /** One cache lookup of `kind`, its outcome and how long it took. */
  cacheLookup(kind: CacheKind, hit: boolean, seconds: number): void;
  /** Provider spend a cache hit of `kind` avoided: the estimate of the request it served. */
  cacheSaved(kind: CacheKind, usd: number): void;
  /** A generation row was created, with its status at creation and whether a cache served it. */
  generationCreated(model: string, status: CreationStatus, cached: boolean): void;
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

  constructor(options: MetricsOptions = {}) {
    this.onCollectionErrors = options.onCollectionErrors ?? (() => undefined);
    // The exporter is only a reader here: our express app serves the text.
    this.reader = new PrometheusExporter({ preventServerStart: true });
    this.provider = new MeterProvider({ readers: [this.reader] });
    const meter: Meter = this.provider.getMeter("gengate");

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

/** Negative, NaN or infinite amounts would corrupt a counter or a histogram sum: skip them. */
function isAmount(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}
