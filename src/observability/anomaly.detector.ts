import type { Logger } from "../common/logger";
import type { LookupObserver } from "../cache/cache.service";
import type { AlertSeverity, NewAlert } from "./alert.service";
import {
  effectiveSigma,
  sigmasFrom,
  type Baseline,
  type BaselineParams,
  type BaselineStore,
} from "./anomaly.baseline";

export interface AnomalyOptions {
  /** Sigmas beyond the baseline that raise a `warning`. @defaultValue 3 */
  warningSigma: number;
  /** Sigmas beyond the baseline that raise a `critical` alert. @defaultValue 5 */
  criticalSigma: number;
  /** EWMA weight of each new sample. @defaultValue 0.05 */
  alpha: number;
  /** Samples a baseline needs before it may raise anything. @defaultValue 20 */
  warmupSamples: number;
  /** After an alert, the same series stays quiet this long. @defaultValue 1 h */
  cooldownMs: number;
  /** Provider attempts per error-rate sample. @defaultValue 20 */
  errorWindow: number;
  /** Cache lookups (of one kind) per hit-rate sample. @defaultValue 100 */
  cacheWindow: number;
}

/**
 * What the lifecycle tells anomaly detection. Every method swallows its own failures (a
 * Redis hiccup costs a sample, never a generation) and resolves once the sample is counted.
 */
export interface AnomalyObserver {
  /** End-to-end latency of one paid, successful generation of `model`. */
  observeLatency(model: string, ms: number): Promise<void>;
  /** One provider attempt's outcome (failures the user caused count as ok, as for circuits). */
  observeAttempt(provider: string, ok: boolean): Promise<void>;
  /** A charge to the account, at settlement. */
  observeSpend(accountId: string, usd: number): Promise<void>;
  /** One cache lookup of `kind` (EXACT, SEMANTIC) and whether it hit. */
  observeCacheLookup(kind: string, hit: boolean): Promise<void>;
  /** A generation the worker completed and charged: its latency (BATCH excluded) and cost. */
  observeSettled(g: SettledGeneration, model: string, costUsd: number): Promise<void>;
}

/** What {@link AnomalyObserver.observeSettled} reads of a finished generation. */
export interface SettledGeneration {
  accountId: string;
  priority: string;
  createdAt: string;
  completedAt: string | null;
}

/** Stores an alert and sends it on (the {@link AlertService}). */
export interface AlertSink {
  raise(alert: NewAlert): Promise<unknown>;
}

/** Anomaly detection turned off (ANOMALY_DETECTION=false). */
export const NO_ANOMALY_DETECTION: AnomalyObserver = {
  observeLatency: () => Promise.resolve(),
  observeAttempt: () => Promise.resolve(),
  observeSpend: () => Promise.resolve(),
  observeCacheLookup: () => Promise.resolve(),
  observeSettled: () => Promise.resolve(),
};

/** The cache's lookup observer: the metrics as before, plus each lookup for its hit rate. */
export function observingCacheLookups(
  metrics: LookupObserver,
  anomalies: AnomalyObserver,
): LookupObserver {
  return {
    cacheLookup(kind, hit, seconds) {
      metrics.cacheLookup(kind, hit, seconds);
      void anomalies.observeCacheLookup(kind, hit);
    },
  };
}

const HOUR_MS = 3_600_000;

/**
 * The four watched series. `above`: only a rise is an incident (slower, failing more,
 * spending more); `below`: only a fall (the cache hitting less).
 */
const SERIES = {
  /** ln(ms): latencies spread multiplicatively, so the band is a ratio (0.1 ≈ ±10%). */
  latency: { kind: "LATENCY_ANOMALY", direction: "above", minSigma: 0.1, minSigmaRatio: 0 },
  error_rate: { kind: "ERROR_RATE_ANOMALY", direction: "above", minSigma: 0, minSigmaRatio: 0 },
  /** USD per active hour: at least a cent, or a tenth of the usual hour. */
  spend: { kind: "SPEND_ANOMALY", direction: "above", minSigma: 0.01, minSigmaRatio: 0.1 },
  cache_hit_rate: {
    kind: "CACHE_HIT_RATE_ANOMALY",
    direction: "below",
    minSigma: 0,
    minSigmaRatio: 0,
  },
} as const;
export type AnomalyMetric = keyof typeof SERIES;
type Metric = AnomalyMetric;

interface Scored {
  severity: AlertSeverity;
  sigmas: number;
  mean: number;
  sigma: number;
}

/**
 * Rolling-baseline anomaly detection. Each series (a model's latency, a provider's error
 * rate, an account's hourly spend, a cache kind's hit rate) keeps an EWMA mean and variance
 * in a {@link BaselineStore}; a sample is scored against the baseline as it was before the
 * sample, in effective deviations ({@link effectiveSigma}), one-sided:
 *
 * - nothing during the warm-up (fewer than `warmupSamples` samples folded in);
 * - `warningSigma` or more: a `warning`; `criticalSigma` or more: `critical`;
 * - then the series is quiet for `cooldownMs` (one claim per series, shared through the
 *   store), so one incident is one alert; only an escalation breaks through: a critical
 *   sample during a warning's cool-down raises one critical alert (and starts its own
 *   cool-down), while a warning during a critical's cool-down raises nothing.
 *
 * The anomalous sample is still folded in, winsorized at `warningSigma` (see `foldSample`).
 *
 * Rates are sampled per window (a provider's error rate over `errorWindow` attempts, a
 * cache kind's hit rate over `cacheWindow` lookups), since a lone 0/1 outcome says nothing.
 * Spend is summed per UTC hour and per account: a closing hour is folded into the baseline,
 * and every charge scores the hour so far against it (it can only grow, so an hour that
 * crosses the threshold early is already an incident); hours without a charge are not
 * samples, so a quiet weekend does not make Monday look like one.
 */
export class AnomalyDetector implements AnomalyObserver {
  constructor(
    private readonly store: BaselineStore,
    private readonly alerts: AlertSink,
    private readonly opts: AnomalyOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async observeLatency(model: string, ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) return;
    await this.guard("latency", model, async () => {
      const x = Math.log(Math.max(1, ms));
      const scored = await this.foldAndScore("latency", model, x);
      if (!scored) return;
      const usual = Math.exp(scored.mean);
      await this.raise("latency", model, scored, this.opts.cooldownMs, {
        accountId: null,
        message: `Model ${model} took ${formatMs(ms)} end to end, ${scored.sigmas.toFixed(1)}σ above its usual ${formatMs(usual)}`,
        data: {
          model,
          latencyMs: Math.round(ms),
          usualMs: Math.round(usual),
          logSigma: round(scored.sigma, 4),
        },
      });
    });
  }

  async observeAttempt(provider: string, ok: boolean): Promise<void> {
    await this.guard("error_rate", provider, async () => {
      const size = this.opts.errorWindow;
      const window = await this.store.addToWindow(
        series("error_rate", provider),
        ok ? 0 : 1,
        1,
        size,
      );
      if (!window) return;
      const rate = window.hits / window.events;
      const scored = await this.foldAndScore("error_rate", provider, rate);
      if (!scored) return;
      await this.raise("error_rate", provider, scored, this.opts.cooldownMs, {
        accountId: null,
        message: `Provider ${provider} failed ${window.hits} of the last ${window.events} attempts (${percent(rate)}), ${scored.sigmas.toFixed(1)}σ above its usual ${percent(scored.mean)} ± ${percent(scored.sigma)}`,
        data: {
          provider,
          errorRate: round(rate, 4),
          failures: window.hits,
          attempts: window.events,
        },
      });
    });
  }

  async observeCacheLookup(kind: string, hit: boolean): Promise<void> {
    await this.guard("cache_hit_rate", kind, async () => {
      const size = this.opts.cacheWindow;
      const window = await this.store.addToWindow(
        series("cache_hit_rate", kind),
        hit ? 1 : 0,
        1,
        size,
      );
      if (!window) return;
      const rate = window.hits / window.events;
      const scored = await this.foldAndScore("cache_hit_rate", kind, rate);
      if (!scored) return;
      await this.raise("cache_hit_rate", kind, scored, this.opts.cooldownMs, {
        accountId: null,
        message: `${kind} cache hit rate fell to ${percent(rate)} over the last ${window.events} lookups, ${scored.sigmas.toFixed(1)}σ below its usual ${percent(scored.mean)} ± ${percent(scored.sigma)}`,
        data: {
          cacheKind: kind,
          hitRate: round(rate, 4),
          hits: window.hits,
          lookups: window.events,
        },
      });
    });
  }

  async observeSpend(accountId: string, usd: number): Promise<void> {
    // Cache hits and free generations are not spend; only hours with a charge are samples.
    if (!Number.isFinite(usd) || usd <= 0) return;
    await this.guard("spend", accountId, async () => {
      const now = this.now();
      const hour = Math.floor(now / HOUR_MS);
      const id = series("spend", accountId);
      const totals = await this.store.addToBucket(id, hour, usd);
      if (totals.closed !== null) await this.store.fold(id, totals.closed, this.params("spend"));
      const baseline = await this.store.read(id);
      const scored = this.score("spend", baseline, totals.current);
      if (!scored) return;
      const hourStart = new Date(hour * HOUR_MS).toISOString();
      // The hour can only grow: it stays one incident at least until it ends.
      const cooldownMs = Math.max(this.opts.cooldownMs, (hour + 1) * HOUR_MS - now);
      await this.raise("spend", accountId, scored, cooldownMs, {
        accountId,
        message: `The account has spent ${usdText(totals.current)} USD in the hour from ${hourStart.slice(11, 16)} UTC, ${scored.sigmas.toFixed(1)}σ above its usual ${usdText(scored.mean)} ± ${usdText(scored.sigma)} USD per active hour`,
        data: { hourStart, spentUsd: round(totals.current, 6) },
      });
    });
  }

  async observeSettled(g: SettledGeneration, model: string, costUsd: number): Promise<void> {
    // A BATCH generation's time is mostly its wait for the batch, by design: not latency.
    if (g.priority !== "BATCH" && g.completedAt) {
      await this.observeLatency(model, Date.parse(g.completedAt) - Date.parse(g.createdAt));
    }
    await this.observeSpend(g.accountId, costUsd);
  }

  /**
   * A series' baseline as samples are scored against it: samples so far, mean and effective
   * deviation (latency: of ln ms). For tests and operators' tooling.
   */
  async baseline(
    metric: AnomalyMetric,
    key: string,
  ): Promise<{ samples: number; mean: number; sigma: number }> {
    const b = await this.store.read(series(metric, key));
    return { samples: b.samples, mean: b.mean, sigma: effectiveSigma(b, this.params(metric)) };
  }

  /** Folds `x` in and scores it against the baseline before it. */
  private async foldAndScore(metric: Metric, key: string, x: number): Promise<Scored | null> {
    const before = await this.store.fold(series(metric, key), x, this.params(metric));
    return this.score(metric, before, x);
  }

  private score(metric: Metric, b: Baseline, x: number): Scored | null {
    if (b.samples < this.opts.warmupSamples) return null;
    const p = this.params(metric);
    const signed = sigmasFrom(b, p, x);
    const sigmas = SERIES[metric].direction === "above" ? signed : -signed;
    const severity: AlertSeverity | null =
      sigmas >= this.opts.criticalSigma
        ? "critical"
        : sigmas >= this.opts.warningSigma
          ? "warning"
          : null;
    return severity ? { severity, sigmas, mean: b.mean, sigma: effectiveSigma(b, p) } : null;
  }

  private params(metric: Metric): BaselineParams {
    const s = SERIES[metric];
    const rateWindow =
      metric === "error_rate"
        ? this.opts.errorWindow
        : metric === "cache_hit_rate"
          ? this.opts.cacheWindow
          : 0;
    return {
      alpha: this.opts.alpha,
      warmupSamples: this.opts.warmupSamples,
      clampSigma: this.opts.warningSigma,
      minSigma: s.minSigma,
      minSigmaRatio: s.minSigmaRatio,
      rateWindow,
    };
  }

  private async raise(
    metric: Metric,
    key: string,
    scored: Scored,
    cooldownMs: number,
    alert: { accountId: string | null; message: string; data: Record<string, unknown> },
  ): Promise<void> {
    const claimed = await this.store.claimCooldown(
      series(metric, key),
      this.now(),
      cooldownMs,
      scored.severity === "critical" ? 1 : 0,
    );
    if (!claimed) return;
    await this.alerts.raise({
      accountId: alert.accountId,
      userId: null,
      kind: SERIES[metric].kind,
      severity: scored.severity,
      message: alert.message,
      data: {
        metric,
        key,
        ...alert.data,
        sigmas: round(scored.sigmas, 2),
        baselineMean: round(scored.mean, 6),
        baselineSigma: round(scored.sigma, 6),
        warningSigma: this.opts.warningSigma,
        criticalSigma: this.opts.criticalSigma,
      },
    });
  }

  private async guard(metric: Metric, key: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.logger.warn({ err, metric, key }, "anomaly detection skipped a sample");
    }
  }
}

function series(metric: Metric, key: string): string {
  return `${metric}:${key}`;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function percent(rate: number): string {
  return `${round(rate * 100, 1)}%`;
}

function usdText(usd: number): string {
  return usd >= 1 ? usd.toFixed(2) : usd.toPrecision(2);
}

function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
