/**
 * Rolling baselines for anomaly detection: an exponentially weighted mean and variance per
 * series, the arithmetic shared by the in-memory store and the Redis store's Lua script
 * (which must stay a line-by-line copy of {@link foldSample}; the stores' parity test holds
 * them together).
 */

/** A series' baseline as stored: samples folded in so far, EWMA mean and EWMA variance. */
export interface Baseline {
  samples: number;
  mean: number;
  variance: number;
}

export const EMPTY_BASELINE: Baseline = Object.freeze({ samples: 0, mean: 0, variance: 0 });

/**
 * How a sample is folded in and how wide a baseline's deviation is at least.
 *
 * The floor keeps a nearly constant series (a simulated provider, a steady account) from
 * having a deviation near zero, where any wobble would be "50 sigma": below it a change is
 * too small to matter, whatever the statistics say.
 */
export interface BaselineParams {
  /** EWMA weight of a new sample (0 < alpha <= 1). */
  alpha: number;
  /** Samples before a baseline is trusted: no winsorizing, and no alerts, before this many. */
  warmupSamples: number;
  /** Past the warm-up a sample is clamped to mean ± this many (effective) deviations. */
  clampSigma: number;
  /** Absolute floor of the deviation, in the series' unit. */
  minSigma: number;
  /** Floor of the deviation relative to |mean|. */
  minSigmaRatio: number;
  /**
   * For a rate over windows of this many events: the deviation is at least the binomial
   * sampling noise of such a window, sqrt(p(1-p)/n), with p kept at least 1/n from 0 and 1.
   * 0 for series that are not rates.
   */
  rateWindow: number;
}

/** The deviation a sample is measured against: the EWMA deviation, or the floor if larger. */
export function effectiveSigma(b: Baseline, p: BaselineParams): number {
  let floor = Math.max(p.minSigma, p.minSigmaRatio * Math.abs(b.mean));
  if (p.rateWindow > 0) {
    const n = p.rateWindow;
    const rate = Math.max(b.mean, 1 / n);
    const rest = Math.max(1 - b.mean, 1 / n);
    floor = Math.max(floor, Math.sqrt((rate * rest) / n));
  }
  return Math.sqrt(Math.max(b.variance, floor * floor));
}

/** How many effective deviations `x` lies above the baseline's mean (negative: below). */
export function sigmasFrom(b: Baseline, p: BaselineParams, x: number): number {
  return (x - b.mean) / effectiveSigma(b, p);
}

/**
 * Folds one sample into a baseline (Finch's incremental EWMA mean and variance):
 *
 *   a     = max(alpha, 1 / (samples + 1))
 *   diff  = x' - mean
 *   mean' = mean + a * diff
 *   var'  = (1 - a) * (var + a * diff²)
 *
 * With a = 1/(n+1) the recurrence is the plain running mean and population variance, so
 * during the first 1/alpha samples the baseline is the true average of what it has seen
 * instead of leaning on the first sample; after that it forgets with weight alpha.
 *
 * Past the warm-up, x' is x clamped to mean ± clampSigma deviations (winsorized): an
 * anomalous sample still moves the baseline, so a lasting change of level is learnt, but a
 * single spike can widen the deviation by a bounded step only and cannot hide the next one.
 */
export function foldSample(b: Baseline, p: BaselineParams, x: number): Baseline {
  if (b.samples === 0) return { samples: 1, mean: x, variance: 0 };
  let value = x;
  if (b.samples >= p.warmupSamples && p.clampSigma > 0) {
    const limit = p.clampSigma * effectiveSigma(b, p);
    value = Math.min(b.mean + limit, Math.max(b.mean - limit, x));
  }
  const a = Math.max(p.alpha, 1 / (b.samples + 1));
  const diff = value - b.mean;
  return {
    samples: b.samples + 1,
    mean: b.mean + a * diff,
    variance: (1 - a) * (b.variance + a * diff * diff),
  };
}

/** The sum so far of a time bucket, and that of the bucket it closed, if this call closed one. */
export interface BucketTotals {
  current: number;
  closed: number | null;
}

/**
 * Where baselines live: in Redis, shared by every process, or in memory for the embedded
 * single process. Every method is atomic on its series, so concurrent observers (threads of
 * one process or many processes) never lose a sample or close a window twice.
 *
 * Deliberately left out: scoring and alerting (the detector's), and durability — a flushed
 * Redis only means the baselines warm up again.
 */
export interface BaselineStore {
  /** Folds `x` into the series' baseline ({@link foldSample}); returns the baseline before. */
  fold(series: string, x: number, params: BaselineParams): Promise<Baseline>;
  read(series: string): Promise<Baseline>;
  /**
   * Counts `hits` of `events` into the series' current count window; once the window holds
   * `size` events or more, it is emptied and its totals are returned (to exactly one caller).
   */
  addToWindow(
    series: string,
    hits: number,
    events: number,
    size: number,
  ): Promise<{ hits: number; events: number } | null>;
  /**
   * Adds `amount` to the series' time bucket `bucket`. A later bucket closes the current one
   * (its total is returned once, as `closed`); an earlier one, from a lagging clock, counts
   * in the current bucket.
   */
  addToBucket(series: string, bucket: number, amount: number): Promise<BucketTotals>;
  /**
   * Claims the series' cool-down until `now + ttlMs` at `level` if it is not cooling down at
   * `now` at that level or above: true for the one caller that should alert. A higher level
   * breaks through a lower one's cool-down (a critical after a warning), never the reverse.
   */
  claimCooldown(series: string, now: number, ttlMs: number, level?: number): Promise<boolean>;
}
