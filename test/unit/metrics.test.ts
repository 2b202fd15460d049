import { BUILTIN_MODELS } from "../../src/cost/model-catalog";
import {
  CACHE_LOOKUP_BUCKETS_SECONDS,
  Metrics,
  type CacheKind,
  type CreationStatus,
} from "../../src/observability";
import { labelSets, parsePrometheusText, valueOf, type Exposition } from "../helpers/prometheus";

async function scrape(metrics: Metrics): Promise<Exposition> {
  return parsePrometheusText(await metrics.prometheusText());
}

describe("Metrics", () => {
  let metrics: Metrics;
  beforeEach(() => {
    metrics = new Metrics();
  });
  afterEach(async () => {
    await metrics.shutdown();
  });

  it("exposes exactly the documented metric names and types", async () => {
    metrics.cacheLookup("EXACT", true, 0.001);
    metrics.cacheSaved("EXACT", 0.01);
    metrics.generationCreated("sim-image-fast", "SUCCEEDED", true);

    const { types, samples } = await scrape(metrics);

    expect(Object.fromEntries(types)).toEqual({
      gengate_cache_lookups_total: "counter",
      gengate_cache_saved_usd_total: "counter",
      gengate_generations_total: "counter",
      gengate_cache_lookup_seconds: "histogram",
    });
    expect(new Set(samples.map((s) => s.name))).toEqual(
      new Set([
        "gengate_cache_lookups_total",
        "gengate_cache_saved_usd_total",
        "gengate_generations_total",
        "gengate_cache_lookup_seconds_count",
        "gengate_cache_lookup_seconds_sum",
        "gengate_cache_lookup_seconds_bucket",
      ]),
    );
  });

  it("counts cache lookups per kind and result", async () => {
    const script: [CacheKind, boolean][] = [
      ["EXACT", true],
      ["EXACT", true],
      ["EXACT", false],
      ["SEMANTIC", false],
      ["SEMANTIC", false],
      ["SEMANTIC", true],
      ["SEMANTIC", false],
      ["INFLIGHT", true],
    ];
    for (const [kind, hit] of script) metrics.cacheLookup(kind, hit, 0.001);

    const text = await scrape(metrics);

    const count = (kind: string, result: string) =>
      valueOf(text, "gengate_cache_lookups_total", { kind, result });
    expect(count("EXACT", "hit")).toBe(2);
    expect(count("EXACT", "miss")).toBe(1);
    expect(count("SEMANTIC", "hit")).toBe(1);
    expect(count("SEMANTIC", "miss")).toBe(3);
    expect(count("INFLIGHT", "hit")).toBe(1);
    // A label set never recorded has no series rather than a zero.
    expect(count("INFLIGHT", "miss")).toBeUndefined();
    expect(labelSets(text, "gengate_cache_lookups_total")).toHaveLength(5);
  });

  it("records lookup durations in a histogram per kind, buckets cumulative", async () => {
    const exact = [0.00005, 0.0002, 0.0002, 0.003, 0.2];
    for (const s of exact) metrics.cacheLookup("EXACT", true, s);
    metrics.cacheLookup("SEMANTIC", false, 0.04);

    const text = await scrape(metrics);

    const exactSeries = (suffix: string, extra: Record<string, string> = {}) =>
      valueOf(text, `gengate_cache_lookup_seconds_${suffix}`, { kind: "EXACT", ...extra });
    expect(exactSeries("count")).toBe(5);
    expect(exactSeries("sum")).toBeCloseTo(0.20345, 10);
    const buckets = Object.fromEntries(
      labelSets(text, "gengate_cache_lookup_seconds_bucket")
        .filter((l) => l.kind === "EXACT")
        .map((l) => [l.le, exactSeries("bucket", { le: l.le! })]),
    );
    expect(buckets).toEqual({
      "0.0001": 1,
      "0.00025": 3,
      "0.0005": 3,
      "0.001": 3,
      "0.0025": 3,
      "0.005": 4,
      "0.01": 4,
      "0.025": 4,
      "0.05": 4,
      "0.1": 4,
      "+Inf": 5,
    });
    expect(Object.keys(buckets)).toEqual([...CACHE_LOOKUP_BUCKETS_SECONDS.map(String), "+Inf"]);
    expect(valueOf(text, "gengate_cache_lookup_seconds_count", { kind: "SEMANTIC" })).toBe(1);
    expect(valueOf(text, "gengate_cache_lookup_seconds_sum", { kind: "SEMANTIC" })).toBe(0.04);
  });

  it("sums the spend saved per kind", async () => {
    metrics.cacheSaved("EXACT", 0.04);
    metrics.cacheSaved("EXACT", 0.5);
    metrics.cacheSaved("SEMANTIC", 0.003);

    const text = await scrape(metrics);

    expect(valueOf(text, "gengate_cache_saved_usd_total", { kind: "EXACT" })).toBeCloseTo(0.54, 10);
    expect(valueOf(text, "gengate_cache_saved_usd_total", { kind: "SEMANTIC" })).toBe(0.003);
    expect(valueOf(text, "gengate_cache_saved_usd_total", { kind: "INFLIGHT" })).toBeUndefined();
  });

  it("skips negative, NaN and infinite amounts but still counts the lookup", async () => {
    metrics.cacheSaved("EXACT", 0.25);
    for (const bad of [-1, NaN, Infinity]) {
      metrics.cacheSaved("EXACT", bad);
      metrics.cacheLookup("EXACT", true, bad);
    }

    const text = await scrape(metrics);

    expect(valueOf(text, "gengate_cache_saved_usd_total", { kind: "EXACT" })).toBe(0.25);
    expect(valueOf(text, "gengate_cache_lookups_total", { kind: "EXACT", result: "hit" })).toBe(3);
    expect(valueOf(text, "gengate_cache_lookup_seconds_count", { kind: "EXACT" })).toBeUndefined();
  });

  it("counts generations per model, status at creation and cached", async () => {
    const script: [string, CreationStatus, boolean][] = [
      ["sim-image-fast", "QUEUED", false],
      ["sim-image-fast", "QUEUED", false],
      ["sim-image-fast", "SUCCEEDED", true],
      ["sim-image-fast", "QUEUED", true],
      ["sim-video", "BATCHED", false],
    ];
    for (const [model, status, cached] of script) metrics.generationCreated(model, status, cached);

    const text = await scrape(metrics);

    const count = (model: string, status: string, cached: string) =>
      valueOf(text, "gengate_generations_total", { model, status, cached });
    expect(count("sim-image-fast", "QUEUED", "false")).toBe(2);
    expect(count("sim-image-fast", "SUCCEEDED", "true")).toBe(1);
    expect(count("sim-image-fast", "QUEUED", "true")).toBe(1);
    expect(count("sim-video", "BATCHED", "false")).toBe(1);
    expect(labelSets(text, "gengate_generations_total")).toHaveLength(4);
  });

  it("takes every catalog model name as a label value unchanged", async () => {
    for (const { name } of BUILTIN_MODELS) metrics.generationCreated(name, "QUEUED", false);

    const text = await scrape(metrics);

    expect(labelSets(text, "gengate_generations_total").map((l) => l.model)).toEqual(
      BUILTIN_MODELS.map((m) => m.name),
    );
  });

  it("records a closed label value outside its set as other", async () => {
    // Only reachable through a cast: the types refuse these at compile time.
    metrics.cacheLookup("PROMPT" as CacheKind, true, 0.001);
    metrics.cacheSaved("user-42" as CacheKind, 1);
    metrics.generationCreated("sim-image-fast", "FAILED" as CreationStatus, false);

    const text = await scrape(metrics);

    expect(labelSets(text, "gengate_cache_lookups_total")).toEqual([
      { kind: "other", result: "hit" },
    ]);
    expect(labelSets(text, "gengate_cache_saved_usd_total")).toEqual([{ kind: "other" }]);
    expect(labelSets(text, "gengate_generations_total")).toEqual([
      { model: "sim-image-fast", status: "other", cached: "false" },
    ]);
  });

  it("keeps the counts of two instances in one process apart", async () => {
    const other = new Metrics();
    try {
      metrics.cacheLookup("EXACT", true, 0.001);
      other.cacheLookup("EXACT", true, 0.001);
      other.cacheLookup("EXACT", true, 0.001);

      const mine = await scrape(metrics);
      const theirs = await scrape(other);

      expect(valueOf(mine, "gengate_cache_lookups_total", { kind: "EXACT", result: "hit" })).toBe(
        1,
      );
      expect(valueOf(theirs, "gengate_cache_lookups_total", { kind: "EXACT", result: "hit" })).toBe(
        2,
      );
    } finally {
      await other.shutdown();
    }
  });

  it("keeps counting across scrapes (cumulative, not reset by a read)", async () => {
    metrics.generationCreated("sim-image-fast", "QUEUED", false);
    await metrics.prometheusText();
    metrics.generationCreated("sim-image-fast", "QUEUED", false);

    const text = await scrape(metrics);

    expect(
      valueOf(text, "gengate_generations_total", {
        model: "sim-image-fast",
        status: "QUEUED",
        cached: "false",
      }),
    ).toBe(2);
  });

  it("refuses to scrape after shutdown", async () => {
    const closed = new Metrics();
    await closed.shutdown();

    await expect(closed.prometheusText()).rejects.toThrow();
  });
});
