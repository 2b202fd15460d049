import {
  EMPTY_BASELINE,
  foldSample,
  type Baseline,
  type BaselineParams,
  type BaselineStore,
  type BucketTotals,
} from "./anomaly.baseline";

/**
 * Baselines in this process's memory: the embedded default (one process, no Redis) and unit
 * tests. Each method runs to completion without awaiting, so it is atomic like the Lua one.
 * Baselines are few (one per model, provider, account and cache kind) and are kept until
 * the process ends.
 */
export class InMemoryBaselineStore implements BaselineStore {
  private readonly baselines = new Map<string, Baseline>();
  private readonly windows = new Map<string, { hits: number; events: number }>();
  private readonly buckets = new Map<string, { bucket: number; sum: number }>();
  private readonly cooldowns = new Map<string, { until: number; level: number }>();

  fold(series: string, x: number, params: BaselineParams): Promise<Baseline> {
    const before = this.baselines.get(series) ?? EMPTY_BASELINE;
    this.baselines.set(series, foldSample(before, params, x));
    return Promise.resolve(before);
  }

  read(series: string): Promise<Baseline> {
    return Promise.resolve(this.baselines.get(series) ?? EMPTY_BASELINE);
  }

  addToWindow(
    series: string,
    hits: number,
    events: number,
    size: number,
  ): Promise<{ hits: number; events: number } | null> {
    const w = this.windows.get(series) ?? { hits: 0, events: 0 };
    const next = { hits: w.hits + hits, events: w.events + events };
    if (next.events >= size) {
      this.windows.delete(series);
      return Promise.resolve(next);
    }
    this.windows.set(series, next);
    return Promise.resolve(null);
  }

  addToBucket(series: string, bucket: number, amount: number): Promise<BucketTotals> {
    const b = this.buckets.get(series);
    if (!b || bucket > b.bucket) {
      this.buckets.set(series, { bucket, sum: amount });
      return Promise.resolve({ current: amount, closed: b ? b.sum : null });
    }
    b.sum += amount;
    return Promise.resolve({ current: b.sum, closed: null });
  }

  claimCooldown(series: string, now: number, ttlMs: number, level = 0): Promise<boolean> {
    const held = this.cooldowns.get(series);
    if (held !== undefined && held.until > now && held.level >= level) {
      return Promise.resolve(false);
    }
    this.cooldowns.set(series, { until: now + ttlMs, level });
    return Promise.resolve(true);
  }
}
