import Redis from "ioredis";
import { InMemoryTokenBucket } from "../../src/routing/in-memory-rate-limiter";
import type {
  RateLimitDecision,
  RateLimiter,
  RateLimiterOptions,
} from "../../src/routing/rate-limiter";
import { RedisTokenBucket } from "../../src/routing/redis-rate-limiter";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";

const filePrefix = uniquePrefix();
const connections: Redis[] = [];
let testCount = 0;

function connect(): Redis {
  const redis = new Redis(TEST_REDIS_URL);
  connections.push(redis);
  return redis;
}

afterAll(async () => {
  await Promise.all(connections.map((c) => c.quit()));
  await deletePrefix(filePrefix);
});

/** A clock the test moves by hand. */
class FakeClock {
  t = 1_700_000_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

type Make = (opts: RateLimiterOptions, now: () => number) => RateLimiter;

const makers: Array<[string, Make]> = [
  ["in-memory", (opts, now) => new InMemoryTokenBucket(opts, now)],
  [
    "Redis",
    (opts, now) => {
      // A prefix per test, so one test's buckets never meet another's.
      return new RedisTokenBucket(connect(), `${filePrefix}:t${++testCount}`, opts, now);
    },
  ],
];

function ok(remaining: number): RateLimitDecision {
  return { allowed: true, remaining, retryAfterSeconds: 0 };
}

function refused(remaining: number, retryAfterSeconds: number): RateLimitDecision {
  return { allowed: false, remaining, retryAfterSeconds };
}

/** Takes one at a time, in order, as a burst from one client would. */
async function takeN(limiter: RateLimiter, key: string, n: number, cost?: number) {
  const out: RateLimitDecision[] = [];
  for (let i = 0; i < n; i++) out.push(await limiter.take(key, cost));
  return out;
}

describe.each(makers)("%s token bucket", (_name, make) => {
  let clock: FakeClock;

  beforeEach(() => {
    clock = new FakeClock();
  });

  it("allows a burst up to capacity, then refuses until a token is back", async () => {
    const limiter = make({ capacity: 5, refillPerSecond: 0.25 }, clock.now);
    expect(await takeN(limiter, "k", 6)).toEqual([
      ok(4),
      ok(3),
      ok(2),
      ok(1),
      ok(0),
      refused(0, 4),
    ]);
  });

  it("refills by elapsed time, keeping fractions of a token", async () => {
    const limiter = make({ capacity: 5, refillPerSecond: 1 }, clock.now);
    await takeN(limiter, "k", 5);
    clock.advance(2500);
    // 2.5 tokens: two whole ones, and half a token needs half a second more.
    expect(await takeN(limiter, "k", 3)).toEqual([ok(1), ok(0), refused(0, 1)]);
    clock.advance(500);
    expect(await limiter.take("k")).toEqual(ok(0));
  });

  it("never refills past capacity", async () => {
    const limiter = make({ capacity: 3, refillPerSecond: 1 }, clock.now);
    await takeN(limiter, "k", 3);
    clock.advance(3_600_000);
    expect(await takeN(limiter, "k", 4)).toEqual([ok(2), ok(1), ok(0), refused(0, 1)]);
  });

  it("keeps each key's bucket apart", async () => {
    const limiter = make({ capacity: 2, refillPerSecond: 1 }, clock.now);
    expect(await takeN(limiter, "a", 3)).toEqual([ok(1), ok(0), refused(0, 1)]);
    expect(await takeN(limiter, "b", 2)).toEqual([ok(1), ok(0)]);
  });

  it("charges a cost at once and waits until enough tokens for it are back", async () => {
    const limiter = make({ capacity: 10, refillPerSecond: 2 }, clock.now);
    expect(await takeN(limiter, "k", 3, 4)).toEqual([ok(6), ok(2), refused(2, 1)]);
    expect(await limiter.take("k", 2)).toEqual(ok(0));
    // 7 tokens missing at 2 a second: 3.5 s, rounded up.
    expect(await limiter.take("k", 7)).toEqual(refused(0, 4));
    clock.advance(3500);
    expect(await limiter.take("k", 7)).toEqual(ok(0));
  });

  it("refuses a cost above capacity with the time a full refill takes, spending nothing", async () => {
    const limiter = make({ capacity: 5, refillPerSecond: 0.5 }, clock.now);
    expect(await limiter.take("k", 6)).toEqual(refused(5, 10));
    expect(await limiter.take("k", 5)).toEqual(ok(0));
  });

  it("does not take tokens back when a caller's clock lags", async () => {
    const limiter = make({ capacity: 5, refillPerSecond: 1 }, clock.now);
    await takeN(limiter, "k", 5);
    clock.advance(2000);
    expect(await limiter.take("k")).toEqual(ok(1));
    clock.advance(-1500);
    expect(await limiter.take("k")).toEqual(ok(0));
    // Refill resumes from the latest time seen, not the lagging one.
    clock.advance(1500 + 1000);
    expect(await takeN(limiter, "k", 2)).toEqual([ok(0), refused(0, 1)]);
  });

  it("rejects a cost that is not a positive number and options that make no bucket", async () => {
    const limiter = make({ capacity: 5, refillPerSecond: 1 }, clock.now);
    await expect(limiter.take("k", 0)).rejects.toThrow(RangeError);
    await expect(limiter.take("k", Number.NaN)).rejects.toThrow(RangeError);
    expect(() => make({ capacity: 0, refillPerSecond: 1 }, clock.now)).toThrow(
      "Rate limiter capacity must be a positive number, got 0.",
    );
    expect(() => make({ capacity: 5, refillPerSecond: -1 }, clock.now)).toThrow(
      "Rate limiter refillPerSecond must be a positive number, got -1.",
    );
  });
});

describe("in-memory token bucket bounds", () => {
  it("drops buckets that are full again before keeping a new key", async () => {
    const clock = new FakeClock();
    const limiter = new InMemoryTokenBucket(
      { capacity: 2, refillPerSecond: 1, maxKeys: 3 },
      clock.now,
    );
    await limiter.take("a");
    await limiter.take("b");
    clock.advance(2000); // a and b are full again
    await limiter.take("c");
    expect(limiter.size).toBe(1);
  });

  it("drops the least recently used bucket at the bound", async () => {
    const clock = new FakeClock();
    const limiter = new InMemoryTokenBucket(
      { capacity: 2, refillPerSecond: 1, maxKeys: 2 },
      clock.now,
    );
    await takeN(limiter, "a", 2);
    await takeN(limiter, "b", 2);
    await limiter.take("a"); // a is now the most recently used
    await limiter.take("c");
    expect(limiter.size).toBe(2);
    // a kept its (empty) bucket; b was dropped and starts full.
    expect(await limiter.take("a")).toEqual(refused(0, 1));
    expect(await limiter.take("b")).toEqual(ok(1));
  });
});

describe("Redis token bucket across connections", () => {
  const opts = { capacity: 10, refillPerSecond: 1 };
  let clock: FakeClock;
  let prefix: string;

  beforeEach(() => {
    clock = new FakeClock();
    prefix = `${filePrefix}:t${++testCount}`;
  });

  it("allows exactly capacity out of 50 concurrent takes on one key", async () => {
    // Five instances on five connections, ten calls each, all in flight at once.
    const limiters = Array.from(
      { length: 5 },
      () => new RedisTokenBucket(connect(), prefix, opts, clock.now),
    );
    const decisions = await Promise.all(
      limiters.flatMap((l) => Array.from({ length: 10 }, () => l.take("k"))),
    );
    const allowed = decisions.filter((d) => d.allowed);
    expect(allowed).toHaveLength(10);
    // Each token spent once: the counts left are 9..0, each exactly once.
    expect(allowed.map((d) => d.remaining).sort((x, y) => x - y)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
    ]);
    expect(decisions.filter((d) => !d.allowed)).toEqual(
      Array.from({ length: 40 }, () => refused(0, 1)),
    );
  });

  it("shares one bucket between instances on separate connections", async () => {
    const a = new RedisTokenBucket(connect(), prefix, opts, clock.now);
    const b = new RedisTokenBucket(connect(), prefix, opts, clock.now);
    expect(await a.take("k", 6)).toEqual(ok(4));
    expect(await b.take("k", 3)).toEqual(ok(1));
    expect(await a.take("k", 2)).toEqual(refused(1, 1));
  });

  it("lets an idle key expire once its bucket would be full again", async () => {
    const redis = connect();
    const limiter = new RedisTokenBucket(redis, prefix, opts, clock.now);
    await limiter.take("k");
    const pttl = await redis.pttl(`${prefix}:rl:k`);
    // At least the 10 s a full refill takes (sooner would hand out a burst early), and not
    // much more.
    expect(pttl).toBeGreaterThanOrEqual(10_000 - 100);
    expect(pttl).toBeLessThanOrEqual(15_000);
  });
});
