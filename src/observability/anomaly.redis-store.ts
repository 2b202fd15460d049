import { createHash } from "node:crypto";
import type Redis from "ioredis";
import type { Baseline, BaselineParams, BaselineStore, BucketTotals } from "./anomaly.baseline";

/**
 * `foldSample` (anomaly.baseline.ts) in Lua, read-modify-write in one script so samples from
 * every process are folded one at a time and none is lost. Keep the two in step.
 *
 * KEYS[1]: the baseline hash {samples, mean, variance}
 * ARGV: x, alpha, warmupSamples, clampSigma, minSigma, minSigmaRatio, rateWindow, ttl (ms)
 * Returns the baseline before the sample: {samples, mean, variance} as strings.
 */
const FOLD_LUA = `
local function fmt(v) return string.format('%.17g', v) end
local s = redis.call('HMGET', KEYS[1], 'samples', 'mean', 'variance')
local n = tonumber(s[1]) or 0
local mean = tonumber(s[2]) or 0
local var = tonumber(s[3]) or 0
local x = tonumber(ARGV[1])
local alpha = tonumber(ARGV[2])
local warmup = tonumber(ARGV[3])
local clamp = tonumber(ARGV[4])
local minSigma = tonumber(ARGV[5])
local ratio = tonumber(ARGV[6])
local window = tonumber(ARGV[7])

local function sigma()
  local floor = math.max(minSigma, ratio * math.abs(mean))
  if window > 0 then
    local rate = math.max(mean, 1 / window)
    local rest = math.max(1 - mean, 1 / window)
    floor = math.max(floor, math.sqrt(rate * rest / window))
  end
  return math.sqrt(math.max(var, floor * floor))
end

local nn, nmean, nvar
if n == 0 then
  nn, nmean, nvar = 1, x, 0
else
  local value = x
  if n >= warmup and clamp > 0 then
    local limit = clamp * sigma()
    value = math.min(mean + limit, math.max(mean - limit, x))
  end
  local a = math.max(alpha, 1 / (n + 1))
  local diff = value - mean
  nn = n + 1
  nmean = mean + a * diff
  nvar = (1 - a) * (var + a * diff * diff)
end
redis.call('HSET', KEYS[1], 'samples', nn, 'mean', fmt(nmean), 'variance', fmt(nvar))
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return {tostring(n), fmt(mean), fmt(var)}
`;

/**
 * KEYS[1]: the count window hash {hits, events}
 * ARGV: hits, events, size, ttl (ms)
 * Returns {hits, events} of the window this call filled (and emptied), else nil.
 */
const WINDOW_LUA = `
local hits = redis.call('HINCRBY', KEYS[1], 'hits', ARGV[1])
local events = redis.call('HINCRBY', KEYS[1], 'events', ARGV[2])
if events >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  return {hits, events}
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
`;

/**
 * KEYS[1]: the time bucket hash {bucket, sum}
 * ARGV: bucket, amount, ttl (ms)
 * Returns {current sum, closed bucket's sum or nil}.
 */
const BUCKET_LUA = `
local b = tonumber(redis.call('HGET', KEYS[1], 'bucket'))
local bucket = tonumber(ARGV[1])
local closed = false
local current
if b == nil or bucket > b then
  if b ~= nil then closed = redis.call('HGET', KEYS[1], 'sum') end
  redis.call('HSET', KEYS[1], 'bucket', ARGV[1], 'sum', ARGV[2])
  current = ARGV[2]
else
  current = redis.call('HINCRBYFLOAT', KEYS[1], 'sum', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {current, closed}
`;

/**
 * SET NX with a TTL, judged by the caller's clock rather than Redis's (as the rate limiter
 * does), so tests can drive time; a higher level breaks through a lower one's cool-down. The
 * value is `<when the cool-down ends>:<level>`.
 *
 * KEYS[1]: the cool-down key
 * ARGV: now (ms), ttl (ms), now + ttl, level
 * Returns 1 when this call claimed it.
 */
const COOLDOWN_LUA = `
local held = redis.call('GET', KEYS[1])
if held then
  local untilAt, level = string.match(held, '^(%d+):?(%d*)$')
  if untilAt and tonumber(untilAt) > tonumber(ARGV[1])
    and (tonumber(level) or 0) >= tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[4], 'PX', ARGV[2])
return 1
`;

/** A series no one has observed for this long starts over (a model or account gone quiet). */
const IDLE_TTL_MS = 30 * 86_400_000;

class Script {
  private readonly sha: string;
  constructor(readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  async run(redis: Redis, key: string, args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, 1, key, ...args);
    } catch (err) {
      // First call on this server (or after SCRIPT FLUSH): send the script, which caches it.
      if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
      return redis.eval(this.lua, 1, key, ...args);
    }
  }
}

const FOLD = new Script(FOLD_LUA);
const WINDOW = new Script(WINDOW_LUA);
const BUCKET = new Script(BUCKET_LUA);
const COOLDOWN = new Script(COOLDOWN_LUA);

/**
 * Baselines shared by every process through Redis, one small hash per series:
 *
 *   {prefix}:anomaly:baseline:{series}   samples, mean, variance
 *   {prefix}:anomaly:window:{series}     hits, events of the open count window
 *   {prefix}:anomaly:bucket:{series}     bucket, sum of the open time bucket
 *   {prefix}:anomaly:cooldown:{series}   until when (ms) the series stays quiet
 *
 * Each key is updated by one Lua script; all but the cool-down expire after 30 idle days.
 */
export class RedisBaselineStore implements BaselineStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async fold(series: string, x: number, p: BaselineParams): Promise<Baseline> {
    const before = (await FOLD.run(this.redis, this.k("baseline", series), [
      String(x),
      String(p.alpha),
      String(p.warmupSamples),
      String(p.clampSigma),
      String(p.minSigma),
      String(p.minSigmaRatio),
      String(p.rateWindow),
      String(IDLE_TTL_MS),
    ])) as [string, string, string];
    return { samples: Number(before[0]), mean: Number(before[1]), variance: Number(before[2]) };
  }

  async read(series: string): Promise<Baseline> {
    const [samples, mean, variance] = await this.redis.hmget(
      this.k("baseline", series),
      "samples",
      "mean",
      "variance",
    );
    return {
      samples: Number(samples ?? 0),
      mean: Number(mean ?? 0),
      variance: Number(variance ?? 0),
    };
  }

  async addToWindow(
    series: string,
    hits: number,
    events: number,
    size: number,
  ): Promise<{ hits: number; events: number } | null> {
    const closed = (await WINDOW.run(this.redis, this.k("window", series), [
      hits,
      events,
      size,
      IDLE_TTL_MS,
    ])) as [number, number] | null;
    return closed ? { hits: Number(closed[0]), events: Number(closed[1]) } : null;
  }

  async addToBucket(series: string, bucket: number, amount: number): Promise<BucketTotals> {
    const [current, closed] = (await BUCKET.run(this.redis, this.k("bucket", series), [
      String(bucket),
      String(amount),
      IDLE_TTL_MS,
    ])) as [string, string | null];
    return { current: Number(current), closed: closed === null ? null : Number(closed) };
  }

  async claimCooldown(series: string, now: number, ttlMs: number, level = 0): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const claimed = await COOLDOWN.run(this.redis, this.k("cooldown", series), [
      String(now),
      String(ttl),
      String(now + ttl),
      String(level),
    ]);
    return claimed === 1;
  }

  private k(kind: string, series: string): string {
    return `${this.prefix}:anomaly:${kind}:${series}`;
  }
}
