import { ConfigError } from "../config";
import {
  DEFAULT_CIRCUIT_OPTIONS,
  type CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitOutcome,
  type CircuitState,
  type CircuitTransition,
  type ProviderHealthSnapshot,
} from "./circuit-breaker";

/**
 * What `acquire` returns. Beyond the interface's fields it carries the OPEN → HALF_OPEN
 * transition when this very call handed out the probe: that transition happens in `acquire`,
 * not in `record`, and this is the one place that knows it happened.
 */
export interface CircuitDecision {
  allowed: boolean;
  state: CircuitState;
  /**
   * When refused: ms until the cool-down or a Retry-After pause ends. Absent while a
   * half-open probe is out: its outcome, not a clock, decides when calls may go again.
   */
  retryAfterMs?: number;
  transition?: CircuitTransition;
}

/** A call as the window keeps it: a rate-limited call is neither a success nor a failure. */
export type OutcomeKind = "ok" | "failed" | "rateLimited";

export interface WindowEntry {
  kind: OutcomeKind;
  latencyMs: number;
}

/** A 429 without a Retry-After pauses the provider this long. */
export const DEFAULT_RATE_LIMIT_PAUSE_MS = 1000;

/** Merges the defaults and refuses options that would make the breaker meaningless. */
export function resolveCircuitOptions(
  opts: Partial<CircuitBreakerOptions> = {},
): CircuitBreakerOptions {
  const o = { ...DEFAULT_CIRCUIT_OPTIONS, ...opts };
  const problems: string[] = [];
  const positive = (name: keyof CircuitBreakerOptions) => {
    if (!Number.isFinite(o[name]) || o[name] <= 0) problems.push(`${name}: must be more than 0`);
  };
  positive("windowMs");
  positive("probeTimeoutMs");
  if (!Number.isFinite(o.coolDownMs) || o.coolDownMs < 0)
    problems.push("coolDownMs: must be 0 or more");
  if (!Number.isInteger(o.minRequests) || o.minRequests < 1) {
    problems.push("minRequests: must be a whole number of at least 1");
  }
  if (!(o.failureThreshold > 0 && o.failureThreshold <= 1)) {
    problems.push("failureThreshold: must be a rate above 0 and at most 1");
  }
  if (problems.length) {
    throw new ConfigError(`Invalid circuit breaker options:\n  ${problems.join("\n  ")}`);
  }
  return o;
}

export function outcomeKind(outcome: CircuitOutcome): OutcomeKind {
  if (outcome.rateLimited) return "rateLimited";
  return outcome.ok ? "ok" : "failed";
}

/** What a failed or rate-limited call leaves as the provider's last error. */
export function outcomeError(outcome: CircuitOutcome): string | null {
  if (outcomeKind(outcome) === "ok") return null;
  return outcome.error ?? (outcome.rateLimited ? "rate limited" : "failed");
}

export function rateLimitPauseMs(outcome: CircuitOutcome): number {
  return Math.max(0, outcome.retryAfterMs ?? DEFAULT_RATE_LIMIT_PAUSE_MS);
}

/** Nearest-rank percentile of ascending values: always one of the observed latencies. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

/**
 * The snapshot both implementations report. Latencies of every call in the window count,
 * failures and 429s included: a provider that times out is slow, not absent.
 */
export function healthSnapshot(
  provider: string,
  circuit: CircuitState,
  openedAtMs: number | null,
  lastError: string | null,
  window: readonly WindowEntry[],
): ProviderHealthSnapshot {
  const requests = window.length;
  const failures = window.filter((e) => e.kind === "failed").length;
  const latencies = window.map((e) => e.latencyMs).sort((a, b) => a - b);
  return {
    provider,
    circuit,
    successRate: requests === 0 ? 1 : 1 - failures / requests,
    requests,
    failures,
    p50LatencyMs: percentile(latencies, 0.5),
    p95LatencyMs: percentile(latencies, 0.95),
    openedAt:
      circuit !== "CLOSED" && openedAtMs !== null ? new Date(openedAtMs).toISOString() : null,
    lastError,
  };
}

interface ProviderCircuit {
  state: CircuitState;
  openedAt: number | null;
  /** When the half-open probe was handed out; null when none is out. */
  probeAt: number | null;
  /** Retry-After of the last 429: no call goes out before this time. */
  pausedUntil: number;
  lastError: string | null;
  /** Outcomes in time order, trimmed to the window from the front. */
  window: Array<WindowEntry & { at: number }>;
}

/**
 * The embedded default: one process, so the state is a map and each method runs to the end
 * without awaiting — nothing can interleave, which is what makes the single probe hold.
 * The same state machine as `RedisCircuitBreaker`'s scripts; the shared test suite keeps
 * the two in step.
 */
export class InMemoryCircuitBreaker implements CircuitBreaker {
  private readonly opts: CircuitBreakerOptions;
  private readonly circuits = new Map<string, ProviderCircuit>();

  constructor(
    opts: Partial<CircuitBreakerOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.opts = resolveCircuitOptions(opts);
  }

  async acquire(provider: string): Promise<CircuitDecision> {
    const now = this.now();
    const c = this.circuit(provider, now);
    if (!c) return { allowed: true, state: "CLOSED" };
    const paused = c.pausedUntil > now ? c.pausedUntil - now : 0;
    if (c.state === "CLOSED") {
      return paused
        ? { allowed: false, state: "CLOSED", retryAfterMs: paused }
        : { allowed: true, state: "CLOSED" };
    }
    if (c.state === "OPEN") {
      const coolDownLeft = c.openedAt! + this.opts.coolDownMs - now;
      if (coolDownLeft > 0 || paused) {
        return { allowed: false, state: "OPEN", retryAfterMs: Math.max(coolDownLeft, paused) };
      }
      c.state = "HALF_OPEN";
      c.probeAt = now;
      return {
        allowed: true,
        state: "HALF_OPEN",
        transition: this.transition(provider, c, "OPEN", now),
      };
    }
    if (paused) return { allowed: false, state: "HALF_OPEN", retryAfterMs: paused };
    if (c.probeAt !== null && now - c.probeAt < this.opts.probeTimeoutMs) {
      return { allowed: false, state: "HALF_OPEN" };
    }
    c.probeAt = now;
    return { allowed: true, state: "HALF_OPEN" };
  }

  async record(provider: string, outcome: CircuitOutcome): Promise<CircuitTransition | null> {
    const now = this.now();
    let c = this.circuit(provider, now);
    if (!c) {
      c = {
        state: "CLOSED",
        openedAt: null,
        probeAt: null,
        pausedUntil: 0,
        lastError: null,
        window: [],
      };
      this.circuits.set(provider, c);
    }
    const kind = outcomeKind(outcome);
    const error = outcomeError(outcome);
    if (error !== null) c.lastError = error;
    if (kind === "rateLimited") {
      c.pausedUntil = Math.max(c.pausedUntil, now + rateLimitPauseMs(outcome));
    }
    const from = c.state;
    if (c.state === "HALF_OPEN") {
      // The probe's verdict. A 429 says nothing about health: free the slot for the next probe.
      c.probeAt = null;
      if (kind === "ok") {
        // Close with a clean slate, or the failures that opened it would reopen it at once.
        c.window = [];
        c.state = "CLOSED";
        c.openedAt = null;
      } else if (kind === "failed") {
        c.state = "OPEN";
        c.openedAt = now;
      }
    }
    c.window.push({ kind, latencyMs: outcome.latencyMs, at: now });
    if (c.state === "CLOSED" && kind === "failed") {
      const requests = c.window.length;
      const failures = c.window.filter((e) => e.kind === "failed").length;
      if (requests >= this.opts.minRequests && failures / requests >= this.opts.failureThreshold) {
        c.state = "OPEN";
        c.openedAt = now;
      }
    }
    return c.state === from ? null : this.transition(provider, c, from, now);
  }

  async health(provider: string): Promise<ProviderHealthSnapshot> {
    const c = this.circuit(provider, this.now());
    if (!c) return healthSnapshot(provider, "CLOSED", null, null, []);
    return healthSnapshot(provider, c.state, c.openedAt, c.lastError, c.window);
  }

  /** The provider's circuit with its window trimmed to now; none until an outcome is recorded. */
  private circuit(provider: string, now: number): ProviderCircuit | undefined {
    const c = this.circuits.get(provider);
    if (!c) return undefined;
    const from = now - this.opts.windowMs;
    let drop = 0;
    while (drop < c.window.length && c.window[drop]!.at <= from) drop++;
    if (drop) c.window.splice(0, drop);
    return c;
  }

  private transition(
    provider: string,
    c: ProviderCircuit,
    from: CircuitState,
    now: number,
  ): CircuitTransition {
    return {
      provider,
      from,
      to: c.state,
      at: new Date(now).toISOString(),
      health: healthSnapshot(provider, c.state, c.openedAt, c.lastError, c.window),
    };
  }
}
