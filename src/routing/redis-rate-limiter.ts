import { createHash } from "node:crypto";
import type Redis from "ioredis";
import { fullRefillMs, validateCost, validateRateLimiterOptions } from "./in-memory-rate-limiter";
import type { RateLimitDecision, RateLimiter, RateLimiterOptions } from "./rate-limiter";

/**
 * Read, refill, take and write back in one script, so concurrent callers (from any process)
 * never spend the same token twice. Same rules as `InMemoryTokenBucket`.
 *
 * KEYS[1]: the bucket hash {tokens, at}
 * ARGV: capacity, refillPerSecond, now (ms), cost, ttl (ms)
 * Returns {allowed (0|1), whole tokens left, retryAfterSeconds}.
 */
const TAKE_SCRIPT = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
-- Each process passes its own clock: one that lags must not take tokens back.
if now > at then
  tokens = tokens + (now - at) * rate / 1000
  at = now
end
tokens = math.min(capacity, tokens)

local allowed = 0
local retry = 0
if cost <= tokens then
  tokens = tokens - cost
  allowed = 1
else
  local missing = cost - tokens
  if cost > capacity then missing = capacity end
  retry = math.max(1, math.ceil(missing / rate))
end

-- %.17g round-trips a double; Lua's default tostring keeps only 14 digits.
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {allowed, math.floor(tokens), retry}
`;

const TAKE_SHA = createHash("sha1").update(TAKE_SCRIPT).digest("hex");

// Past a full refill an absent bucket and a full one are the same, so the key may go; the
// margin covers processes whose clocks run a little behind the one that wrote it.
const EXPIRY_MARGIN_MS = 1000;

/**
 * Token buckets shared by every api process through Redis: one hash per key, updated by one
 * Lua script per `take`. Time comes from `now` (passed to the script, not Redis TIME), so
 * tests drive the clock; across processes that means the refill follows the callers'
 * clocks, which only need to agree roughly (a lagging one refills nothing, never refunds).
 * Idle keys expire once their bucket would be full again.
 */
export class RedisTokenBucket implements RateLimiter {
  private readonly ttlMs: number;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly opts: RateLimiterOptions,
    private readonly now: () => number = Date.now,
  ) {
    validateRateLimiterOptions(opts);
    this.ttlMs = fullRefillMs(opts) + EXPIRY_MARGIN_MS;
  }

  async take(key: string, cost = 1): Promise<RateLimitDecision> {
    validateCost(cost);
    const args = [
      this.k(key),
      String(this.opts.capacity),
      String(this.opts.refillPerSecond),
      String(this.now()),
      String(cost),
      String(this.ttlMs),
    ];
    const [allowed, remaining, retryAfterSeconds] = (await this.run(args)) as [
      number,
      number,
      number,
    ];
    return { allowed: allowed === 1, remaining, retryAfterSeconds };
  }

  private async run(args: string[]): Promise<unknown> {
    try {
      return await this.redis.evalsha(TAKE_SHA, 1, ...args);
    } catch (err) {
      // First call on this server (or after SCRIPT FLUSH): send the script, which caches it.
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      return this.redis.eval(TAKE_SCRIPT, 1, ...args);
    }
  }

  private k(key: string): string {
    return `${this.prefix}:rl:${key}`;
  }
}
