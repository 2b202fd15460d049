import type { RateLimitDecision, RateLimiter, RateLimiterOptions } from "./rate-limiter";

export interface InMemoryRateLimiterOptions extends RateLimiterOptions {
  /**
   * Most buckets kept at once. Buckets idle long enough to be full again go first (they are
   * the same as no bucket); past that the least recently used one goes, which hands its key
   * a fresh burst, so keep this above the number of keys active within one full refill.
   * @defaultValue 10000
   */
  maxKeys?: number;
}

const DEFAULT_MAX_KEYS = 10_000;

/**
 * Fails at start, with a sentence, on options that would make a bucket that never refills
 * or never holds a token. Shared by both implementations (its natural home is
 * `rate-limiter.ts`).
 */
export function validateRateLimiterOptions(opts: RateLimiterOptions): void {
  if (!(Number.isFinite(opts.capacity) && opts.capacity > 0)) {
    throw new Error(`Rate limiter capacity must be a positive number, got ${opts.capacity}.`);
  }
  if (!(Number.isFinite(opts.refillPerSecond) && opts.refillPerSecond > 0)) {
    throw new Error(
      `Rate limiter refillPerSecond must be a positive number, got ${opts.refillPerSecond}.`,
    );
  }
}

/** `take`'s cost is a programming choice, not user input: a bad one is a bug. */
export function validateCost(cost: number): void {
  if (!(Number.isFinite(cost) && cost > 0)) {
    throw new RangeError(`Rate limiter cost must be a positive number, got ${cost}.`);
  }
}

/** Time an empty bucket takes to fill: after that long idle, any bucket is full. */
export function fullRefillMs(opts: RateLimiterOptions): number {
  return Math.ceil((opts.capacity / opts.refillPerSecond) * 1000);
}

interface Bucket {
  tokens: number;
  /** Time the tokens were last brought up to date. */
  at: number;
}

/**
 * The embedded default: one process, so a map of buckets is the whole state and `take`,
 * being synchronous inside, is atomic. Same rules as `RedisTokenBucket`:
 * - tokens refill continuously (fractions kept), never past `capacity`;
 * - a refused take spends nothing; `retryAfterSeconds` is the wait until `cost` tokens are
 *   back, rounded up, at least 1; 0 when allowed;
 * - a `cost` above `capacity` can never pass: it is refused with the time an empty bucket
 *   takes to fill, so a client that honours it backs off for a whole window (callers that
 *   know the cost up front should reject such requests instead);
 * - `remaining` is the whole tokens left.
 */
export class InMemoryTokenBucket implements RateLimiter {
  /** In order of last use (re-inserted on each take), so the oldest come first. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly idleMs: number;

  constructor(
    private readonly opts: InMemoryRateLimiterOptions,
    private readonly now: () => number = Date.now,
  ) {
    validateRateLimiterOptions(opts);
    this.maxKeys = opts.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!(Number.isInteger(this.maxKeys) && this.maxKeys > 0)) {
      throw new Error(`Rate limiter maxKeys must be a positive integer, got ${opts.maxKeys}.`);
    }
    this.idleMs = fullRefillMs(opts);
  }

  async take(key: string, cost = 1): Promise<RateLimitDecision> {
    validateCost(cost);
    const { capacity, refillPerSecond } = this.opts;
    const now = this.now();
    const bucket = this.buckets.get(key) ?? this.admit(now);
    // A clock that steps back must not take tokens back: refill only forward.
    if (now > bucket.at) {
      bucket.tokens += ((now - bucket.at) * refillPerSecond) / 1000;
      bucket.at = now;
    }
    bucket.tokens = Math.min(capacity, bucket.tokens);

    this.buckets.delete(key);
    this.buckets.set(key, bucket);

    if (cost <= bucket.tokens) {
      bucket.tokens -= cost;
      return { allowed: true, remaining: Math.floor(bucket.tokens), retryAfterSeconds: 0 };
    }
    const missing = cost > capacity ? capacity : cost - bucket.tokens;
    return {
      allowed: false,
      remaining: Math.floor(bucket.tokens),
      retryAfterSeconds: Math.max(1, Math.ceil(missing / refillPerSecond)),
    };
  }

  /** A new key's bucket, full, after making room for it. */
  private admit(now: number): Bucket {
    // Oldest first: the idle ones are a prefix, so this stops at the first busy bucket.
    for (const [k, b] of this.buckets) {
      if (this.buckets.size < this.maxKeys && now - b.at < this.idleMs) break;
      this.buckets.delete(k);
    }
    return { tokens: this.opts.capacity, at: now };
  }

  /** Buckets currently kept (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }
}
