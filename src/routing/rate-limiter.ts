/** A token bucket per key (an API key, say). */
export interface RateLimitDecision {
  allowed: boolean;
  /** Tokens left after this call. */
  remaining: number;
  /** When refused: seconds until one token is back (at least 1). */
  retryAfterSeconds: number;
}

export interface RateLimiterOptions {
  /** Bucket size: the burst a key may send at once. */
  capacity: number;
  /** Tokens added per second: the sustained rate. */
  refillPerSecond: number;
}

/**
 * Per-key token buckets, shared by every api process (Redis; in-process in embedded mode).
 * `take` is atomic: concurrent calls on one key never spend the same token twice.
 */
export interface RateLimiter {
  take(key: string, cost?: number): Promise<RateLimitDecision>;
}
