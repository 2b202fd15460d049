export type CircuitState = "CLOSED" | "OPEN" | "HALF_OPEN";

/** How one call to a provider ended, as the breaker counts it. */
export interface CircuitOutcome {
  ok: boolean;
  /** Time the call (the whole attempt) took. */
  latencyMs: number;
  /** Short description of the failure, kept as the provider's last error. */
  error?: string;
  /**
   * A 429: the provider asks us to slow down. Counted as a request but not as a hard
   * failure: it never opens the circuit by itself; `retryAfterMs` pauses the provider.
   */
  rateLimited?: boolean;
  retryAfterMs?: number;
}

export interface ProviderHealthSnapshot {
  provider: string;
  circuit: CircuitState;
  /** Share of successful calls in the window (1 when there were none). */
  successRate: number;
  requests: number;
  failures: number;
  p50LatencyMs: number | null;
  p95LatencyMs: number | null;
  /** ISO time the circuit last opened, while it is not CLOSED. */
  openedAt: string | null;
  lastError: string | null;
}

export interface CircuitTransition {
  provider: string;
  from: CircuitState;
  to: CircuitState;
  at: string;
  health: ProviderHealthSnapshot;
}

export interface CircuitBreakerOptions {
  /** Sliding window over which the failure rate is measured. @defaultValue 60000 */
  windowMs: number;
  /** Calls in the window before the failure rate can open the circuit. @defaultValue 10 */
  minRequests: number;
  /** Failure rate (0..1) at or above which the circuit opens. @defaultValue 0.5 */
  failureThreshold: number;
  /** Time an open circuit waits before letting one probe through. @defaultValue 30000 */
  coolDownMs: number;
  /** A probe with no recorded outcome after this long frees the slot for another. @defaultValue 60000 */
  probeTimeoutMs: number;
}

/**
 * Per-provider circuit breakers whose state every worker shares (Redis; in-process in
 * embedded mode). Contract: `acquire` says whether a call may go out now; while HALF_OPEN it
 * allows exactly one caller (the probe) until that probe's outcome is recorded or times out.
 * `record` counts an outcome in the sliding window and returns the transition it caused, if
 * any. Left out: retries and fallback (the worker's policy).
 */
export interface CircuitBreaker {
  /** `transition` is set when this call moved the circuit (OPEN to HALF_OPEN, handing out the probe). */
  acquire(provider: string): Promise<{
    allowed: boolean;
    state: CircuitState;
    retryAfterMs?: number;
    transition?: CircuitTransition;
  }>;
  record(provider: string, outcome: CircuitOutcome): Promise<CircuitTransition | null>;
  health(provider: string): Promise<ProviderHealthSnapshot>;
}

export const DEFAULT_CIRCUIT_OPTIONS: CircuitBreakerOptions = {
  windowMs: 60_000,
  minRequests: 10,
  failureThreshold: 0.5,
  coolDownMs: 30_000,
  probeTimeoutMs: 60_000,
};
