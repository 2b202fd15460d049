import { createLogger } from "../../src/common/logger";
import { ConfigError, loadConfig } from "../../src/config";
import type { NewAlert } from "../../src/observability/alert.service";
import {
  EMPTY_BASELINE,
  effectiveSigma,
  foldSample,
  type Baseline,
  type BaselineParams,
  type BaselineStore,
} from "../../src/observability/anomaly.baseline";
import {
  AnomalyDetector,
  observingCacheLookups,
  type AnomalyOptions,
} from "../../src/observability/anomaly.detector";
import { InMemoryBaselineStore } from "../../src/observability/anomaly.memory-store";

const HOUR = 3_600_000;
const PARAMS: BaselineParams = {
  alpha: 0.1,
  warmupSamples: 10,
  clampSigma: 3,
  minSigma: 0,
  minSigmaRatio: 0,
  rateWindow: 0,
};
const OPTIONS: AnomalyOptions = {
  warningSigma: 3,
  criticalSigma: 5,
  alpha: 0.1,
  warmupSamples: 10,
  cooldownMs: 60_000,
  errorWindow: 20,
  cacheWindow: 50,
};

/** Deterministic noise in [-1, 1]. */
const noise = (i: number) => Math.sin(i * 2.399);

function fold(xs: number[], p = PARAMS, from: Baseline = EMPTY_BASELINE): Baseline {
  return xs.reduce((b, x) => foldSample(b, p, x), from);
}

function detector(
  opts: Partial<AnomalyOptions> = {},
  store: BaselineStore = new InMemoryBaselineStore(),
) {
  const alerts: NewAlert[] = [];
  const clock = { now: 10 * HOUR };
  const d = new AnomalyDetector(
    store,
    { raise: (a) => Promise.resolve(void alerts.push(a)) },
    { ...OPTIONS, ...opts },
    createLogger("silent"),
    () => clock.now,
  );
  return { d, alerts, clock };
}

describe("rolling baselines: the arithmetic", () => {
  it("is the plain mean and population variance while fewer than 1/alpha samples are in", () => {
    const xs = [10, 12, 9, 14, 11, 10, 13];
    const b = fold(xs);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(b.samples).toBe(7);
    expect(b.mean).toBeCloseTo(mean, 12);
    expect(b.variance).toBeCloseTo(variance, 12);
  });

  it("then weighs each new sample by alpha (EWMA mean and variance)", () => {
    const b = foldSample({ samples: 100, mean: 10, variance: 4 }, PARAMS, 12);
    expect(b.mean).toBeCloseTo(10 + 0.1 * 2, 12);
    expect(b.variance).toBeCloseTo(0.9 * (4 + 0.1 * 4), 12);
  });

  it("winsorizes a sample past the warm-up at 3 deviations, so a spike moves the baseline a bounded step", () => {
    const spike = foldSample({ samples: 100, mean: 10, variance: 4 }, PARAMS, 1000);
    // Clamped to 10 + 3 * 2 = 16.
    expect(spike.mean).toBeCloseTo(10.6, 12);
    expect(spike.variance).toBeCloseTo(0.9 * (4 + 0.1 * 36), 12);
    // During the warm-up nothing is clamped: the baseline is not trusted yet.
    expect(foldSample({ samples: 5, mean: 10, variance: 4 }, PARAMS, 1000).mean).toBeGreaterThan(
      100,
    );
  });

  it("follows a lasting change of level within a few dozen samples despite the clamp", () => {
    let b = fold(Array.from({ length: 50 }, (_, i) => 100 + noise(i)));
    let n = 0;
    while ((200 - b.mean) / effectiveSigma(b, PARAMS) >= 3) {
      b = foldSample(b, PARAMS, 200);
      n++;
    }
    expect(n).toBeGreaterThan(3);
    expect(n).toBeLessThan(40);
  });

  it("never measures against a deviation below the floors", () => {
    const flat: Baseline = { samples: 50, mean: 100, variance: 0 };
    expect(effectiveSigma(flat, { ...PARAMS, minSigmaRatio: 0.1 })).toBeCloseTo(10, 12);
    expect(effectiveSigma(flat, { ...PARAMS, minSigma: 25, minSigmaRatio: 0.1 })).toBe(25);
    // A rate over windows of 20: at least the sampling noise of such a window.
    const never: Baseline = { samples: 50, mean: 0, variance: 0 };
    expect(effectiveSigma(never, { ...PARAMS, rateWindow: 20 })).toBeCloseTo(0.05, 12);
    const tenth: Baseline = { samples: 50, mean: 0.1, variance: 0 };
    expect(effectiveSigma(tenth, { ...PARAMS, rateWindow: 20 })).toBeCloseTo(
      Math.sqrt((0.1 * 0.9) / 20),
      12,
    );
    // A real deviation above the floors is used as it is.
    expect(
      effectiveSigma({ samples: 50, mean: 100, variance: 400 }, { ...PARAMS, minSigmaRatio: 0.1 }),
    ).toBe(20);
  });
});

describe("anomaly detector (in memory)", () => {
  const steadyLatency = async (d: AnomalyDetector, n: number, model = "m", from = 0) => {
    for (let i = from; i < from + n; i++)
      await d.observeLatency(model, 1000 * Math.exp(0.03 * noise(i)));
  };

  it("raises nothing during the warm-up, however far out a sample is", async () => {
    const { d, alerts } = detector();
    await steadyLatency(d, 5);
    await d.observeLatency("m", 60_000);
    await steadyLatency(d, 3, "m", 5);
    expect(alerts).toEqual([]);
  });

  it("raises a warning from 3 deviations and a critical alert from 5, above only", async () => {
    const { d, alerts, clock } = detector();
    await steadyLatency(d, 30);
    // Each sample is scored against the baseline as it was just before it.
    const at = async (sigmas: number) => {
      const b = await d.baseline("latency", "m");
      await d.observeLatency("m", Math.exp(b.mean + sigmas * b.sigma));
    };
    expect((await d.baseline("latency", "m")).sigma).toBeCloseTo(0.1, 12); // the floor: almost flat
    await at(-6); // faster is no incident
    await at(2.9);
    expect(alerts).toEqual([]);
    await at(4);
    clock.now += OPTIONS.cooldownMs;
    const after = await d.baseline("latency", "m");
    await d.observeLatency("m", Math.exp(after.mean + 8 * after.sigma));
    expect(alerts.map((a) => [a.kind, a.severity])).toEqual([
      ["LATENCY_ANOMALY", "warning"],
      ["LATENCY_ANOMALY", "critical"],
    ]);
    expect(alerts[1]).toMatchObject({ accountId: null, userId: null });
    expect(alerts[1]!.data).toMatchObject({ metric: "latency", key: "m", model: "m" });
    expect(alerts[1]!.data.sigmas).toBeCloseTo(8, 6);
    expect(alerts[1]!.message).toMatch(
      /^Model m took \d+ ms end to end, 8\.0σ above its usual \d+ ms$/,
    );
  });

  it("stays quiet on noise within 2 deviations", async () => {
    const { d, alerts } = detector();
    await steadyLatency(d, 20);
    for (let i = 0; i < 300; i++) {
      const x = 1000 * Math.exp(0.25 * noise(i));
      const b = await d.baseline("latency", "m");
      if (i >= 50) expect(Math.abs(Math.log(x) - b.mean) / b.sigma).toBeLessThan(2);
      await d.observeLatency("m", x);
    }
    expect(alerts).toEqual([]);
  });

  it("keeps one series quiet for the cool-down, without silencing the others", async () => {
    const { d, alerts, clock } = detector();
    await steadyLatency(d, 20, "a");
    await steadyLatency(d, 20, "b");
    await d.observeLatency("a", 10_000);
    await d.observeLatency("a", 12_000);
    clock.now += OPTIONS.cooldownMs - 1;
    await d.observeLatency("a", 12_000);
    await d.observeLatency("b", 10_000);
    expect(alerts.map((a) => a.data.key)).toEqual(["a", "b"]);
    clock.now += 1;
    await d.observeLatency("a", 12_000);
    expect(alerts.map((a) => a.data.key)).toEqual(["a", "b", "a"]);
  });

  it("lets a critical sample break through a warning's cool-down, once, and never the reverse", async () => {
    const { d, alerts, clock } = detector();
    await steadyLatency(d, 20);
    // Each sample is scored against the baseline as it is just before it.
    const at = async (sigmas: number) => {
      const b = await d.baseline("latency", "m");
      await d.observeLatency("m", Math.exp(b.mean + sigmas * b.sigma));
    };
    await at(4);
    clock.now += 1000;
    await at(4); // the same warning: quiet
    await at(9); // escalates
    await at(9); // the same critical: quiet
    clock.now += OPTIONS.cooldownMs - 1;
    await at(4); // a warning during the critical's cool-down: quiet
    expect(alerts.map((a) => a.severity)).toEqual(["warning", "critical"]);
    clock.now += 1;
    await at(4);
    expect(alerts.map((a) => a.severity)).toEqual(["warning", "critical", "warning"]);
  });

  it("samples a provider's error rate per window of attempts", async () => {
    const { d, alerts } = detector();
    // 12 windows of 20 attempts with 0 to 2 failures each.
    for (let w = 0; w < 12; w++) {
      for (let i = 0; i < 20; i++) await d.observeAttempt("p", !(i < w % 3));
    }
    expect(await d.baseline("error_rate", "p")).toMatchObject({ samples: 12 });
    // Failures pile up but raise nothing until their window closes.
    for (let i = 0; i < 19; i++) await d.observeAttempt("p", i >= 12);
    expect(alerts).toEqual([]);
    await d.observeAttempt("p", true);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: "ERROR_RATE_ANOMALY",
      severity: "critical",
      accountId: null,
    });
    expect(alerts[0]!.data).toMatchObject({
      provider: "p",
      failures: 12,
      attempts: 20,
      errorRate: 0.6,
    });
    expect(alerts[0]!.message).toContain("Provider p failed 12 of the last 20 attempts (60%)");
  });

  it("watches the cache hit rate for falls only, per lookup kind", async () => {
    const { d, alerts } = detector();
    const windowOf = async (kind: string, hits: number) => {
      for (let i = 0; i < OPTIONS.cacheWindow; i++) await d.observeCacheLookup(kind, i < hits);
    };
    for (let w = 0; w < 12; w++) await windowOf("EXACT", 20 + (w % 3));
    await windowOf("EXACT", 50); // everything hits: good news, not an incident
    await windowOf("SEMANTIC", 0); // another kind, still warming up
    expect(alerts).toEqual([]);
    await windowOf("EXACT", 2);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ kind: "CACHE_HIT_RATE_ANOMALY", severity: "critical" });
    expect(alerts[0]!.message).toMatch(/^EXACT cache hit rate fell to 4% over the last 50 lookups/);
  });

  it("scores an account's spend per UTC hour as it grows, once per hour at most", async () => {
    const { d, alerts, clock } = detector({ cooldownMs: 60_000 });
    const at = (hour: number, minute: number) => (clock.now = hour * HOUR + minute * 60_000);
    for (let h = 0; h < 11; h++) {
      at(h, 10);
      await d.observeSpend("acct", 0.5 + 0.05 * noise(h));
      at(h, 40);
      await d.observeSpend("acct", 0.5 - 0.05 * noise(h + 100));
      // An account that started at hour 3 is still warming up at 10 (7 hours closed).
      if (h === 10) await d.observeSpend("fresh", 50);
      else if (h >= 3) await d.observeSpend("fresh", 1);
    }
    expect(alerts).toEqual([]);
    at(12, 5); // hour 11 had no charge: not a sample
    await d.observeSpend("acct", 0.6);
    const b = await d.baseline("spend", "acct");
    expect(b.samples).toBe(11);
    expect(b.mean).toBeCloseTo(1, 1);
    expect(b.sigma).toBeCloseTo(b.mean / 10, 12); // the floor: a tenth of the usual hour
    await d.observeSpend("acct", 0.6);
    expect(alerts).toEqual([]);
    await d.observeSpend("acct", 0.15); // 1.35 in the hour: about 3.5σ
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      kind: "SPEND_ANOMALY",
      severity: "warning",
      accountId: "acct",
    });
    expect(alerts[0]!.data).toMatchObject({ hourStart: new Date(12 * HOUR).toISOString() });
    // Past the one-minute cool-down, but the same hour: the same incident, unless it escalates.
    at(12, 45);
    await d.observeSpend("acct", 0.05);
    expect(alerts).toHaveLength(1);
    at(12, 50);
    await d.observeSpend("acct", 10);
    await d.observeSpend("acct", 10);
    expect(alerts.map((a) => a.severity)).toEqual(["warning", "critical"]);
    // A new hour, a new incident.
    at(13, 1);
    await d.observeSpend("acct", 10);
    expect(alerts.map((a) => a.severity)).toEqual(["warning", "critical", "critical"]);
    // Free work costs nothing and is no sample.
    await d.observeSpend("acct", 0);
    expect(alerts).toHaveLength(3);
  });

  it("takes a settled generation's latency from its timestamps, leaving BATCH ones out", async () => {
    const { d } = detector();
    const g = (priority: string, ms: number) => ({
      accountId: "acct",
      priority,
      createdAt: "2030-01-01T00:00:00.000Z",
      completedAt: new Date(Date.parse("2030-01-01T00:00:00.000Z") + ms).toISOString(),
    });
    await d.observeSettled(g("STANDARD", 1500), "m", 0.01);
    await d.observeSettled(g("BATCH", 3_600_000), "m", 0.01);
    const b = await d.baseline("latency", "m");
    expect(b.samples).toBe(1);
    expect(Math.exp(b.mean)).toBeCloseTo(1500, 6);
  });

  it("loses a sample, never the caller's work, when the store fails", async () => {
    const failing = new InMemoryBaselineStore();
    failing.fold = () => Promise.reject(new Error("redis down"));
    failing.addToWindow = () => Promise.reject(new Error("redis down"));
    failing.addToBucket = () => Promise.reject(new Error("redis down"));
    const { d, alerts } = detector({}, failing);
    await expect(d.observeLatency("m", 10)).resolves.toBeUndefined();
    await expect(d.observeAttempt("p", false)).resolves.toBeUndefined();
    await expect(d.observeSpend("a", 1)).resolves.toBeUndefined();
    await expect(d.observeCacheLookup("EXACT", true)).resolves.toBeUndefined();
    expect(alerts).toEqual([]);
  });

  it("passes the cache's lookups on to the metrics and the detector", async () => {
    const seen: unknown[] = [];
    const observer = observingCacheLookups(
      { cacheLookup: (...args) => void seen.push(["metrics", ...args]) },
      {
        observeCacheLookup: (kind, hit) =>
          Promise.resolve(void seen.push(["anomalies", kind, hit])),
        observeLatency: () => Promise.resolve(),
        observeAttempt: () => Promise.resolve(),
        observeSpend: () => Promise.resolve(),
        observeSettled: () => Promise.resolve(),
      },
    );
    observer.cacheLookup("EXACT", true, 0.001);
    expect(seen).toEqual([
      ["metrics", "EXACT", true, 0.001],
      ["anomalies", "EXACT", true],
    ]);
  });
});

describe("anomaly configuration", () => {
  it("is on by default with 3 and 5 sigma, alpha 0.05, 20 samples of warm-up and an hour of cool-down", () => {
    expect(loadConfig({})).toMatchObject({
      ANOMALY_DETECTION: true,
      ANOMALY_WARNING_SIGMA: 3,
      ANOMALY_CRITICAL_SIGMA: 5,
      ANOMALY_EWMA_ALPHA: 0.05,
      ANOMALY_WARMUP_SAMPLES: 20,
      ANOMALY_COOLDOWN_SECONDS: 3600,
      ANOMALY_ERROR_WINDOW: 20,
      ANOMALY_CACHE_WINDOW: 100,
    });
    expect(loadConfig({}).ALERT_WEBHOOK_URL).toBeUndefined();
  });

  it("refuses a critical threshold not above the warning one, and values out of range", () => {
    expect(() => loadConfig({ ANOMALY_CRITICAL_SIGMA: "3" })).toThrow(ConfigError);
    expect(() => loadConfig({ ANOMALY_CRITICAL_SIGMA: "3" })).toThrow(/ANOMALY_CRITICAL_SIGMA/);
    expect(() => loadConfig({ ANOMALY_EWMA_ALPHA: "0" })).toThrow(/ANOMALY_EWMA_ALPHA/);
    expect(() => loadConfig({ ANOMALY_WARMUP_SAMPLES: "1" })).toThrow(/ANOMALY_WARMUP_SAMPLES/);
    expect(() => loadConfig({ ALERT_WEBHOOK_URL: "slack.com/x" })).toThrow(/ALERT_WEBHOOK_URL/);
    expect(loadConfig({ ANOMALY_DETECTION: "false" }).ANOMALY_DETECTION).toBe(false);
  });
});
