import Redis from "ioredis";
import { ConfigError } from "../../src/config";
import type {
  CircuitBreaker,
  CircuitBreakerOptions,
  CircuitOutcome,
} from "../../src/routing/circuit-breaker";
import {
  InMemoryCircuitBreaker,
  type CircuitDecision,
} from "../../src/routing/in-memory-circuit-breaker";
import { RedisCircuitBreaker } from "../../src/routing/redis-circuit-breaker";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";

type Breaker = CircuitBreaker & { acquire(provider: string): Promise<CircuitDecision> };
type Make = (opts: Partial<CircuitBreakerOptions>, now: () => number) => Breaker;

const OPTS: CircuitBreakerOptions = {
  windowMs: 10_000,
  minRequests: 4,
  failureThreshold: 0.5,
  coolDownMs: 1_000,
  probeTimeoutMs: 5_000,
};
const P = "replicate";
const iso = (ms: number) => new Date(ms).toISOString();

const ok = (latencyMs = 100): CircuitOutcome => ({ ok: true, latencyMs });
const failed = (error = "HTTP 500", latencyMs = 100): CircuitOutcome => ({
  ok: false,
  latencyMs,
  error,
});
const rateLimited = (retryAfterMs?: number): CircuitOutcome => ({
  ok: false,
  latencyMs: 20,
  error: "HTTP 429",
  rateLimited: true,
  retryAfterMs,
});

/** Each backend hands out breakers for the current test and cleans up after it. */
interface Backend {
  make: Make;
  afterEach(): Promise<void>;
  afterAll(): Promise<void>;
}

const backends: Array<[string, () => Backend]> = [
  [
    "in-memory",
    () => ({
      make: (opts, now) => new InMemoryCircuitBreaker(opts, now),
      afterEach: async () => {},
      afterAll: async () => {},
    }),
  ],
  [
    "Redis",
    () => {
      const redis = new Redis(TEST_REDIS_URL);
      let prefix = uniquePrefix();
      return {
        make: (opts, now) => new RedisCircuitBreaker(redis, prefix, opts, now),
        afterEach: async () => {
          await deletePrefix(prefix);
          prefix = uniquePrefix();
        },
        afterAll: async () => {
          await redis.quit();
        },
      };
    },
  ],
];

describe.each(backends)("%s circuit breaker", (_name, backend) => {
  const b = backend();
  let t: number;
  const now = () => t;
  let cb: Breaker;

  beforeEach(() => {
    t = 0;
    cb = b.make(OPTS, now);
  });
  afterEach(() => b.afterEach());
  afterAll(() => b.afterAll());

  async function recordAll(outcomes: CircuitOutcome[], provider = P) {
    const transitions = [];
    for (const o of outcomes) transitions.push(await cb.record(provider, o));
    return transitions;
  }

  /** Opens the circuit at the current time with four failures. */
  async function open(provider = P) {
    const transitions = await recordAll([failed(), failed(), failed(), failed()], provider);
    expect(transitions[3]).toMatchObject({ from: "CLOSED", to: "OPEN" });
  }

  it("stays closed below minRequests even when every call fails", async () => {
    expect(await recordAll([failed(), failed(), failed()])).toEqual([null, null, null]);
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "CLOSED" });
    expect(await cb.health(P)).toMatchObject({ circuit: "CLOSED", requests: 3, failures: 3 });
  });

  it("opens once the failure rate reaches the threshold and refuses until the cool-down", async () => {
    // 1/4 and 2/5 are under 0.5; 3/6 reaches it.
    const transitions = await recordAll([ok(), ok(), failed(), ok(), failed(), failed()]);
    expect(transitions.slice(0, 5)).toEqual([null, null, null, null, null]);
    expect(transitions[5]).toMatchObject({ from: "CLOSED", to: "OPEN" });

    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "OPEN", retryAfterMs: 1000 });
    t += 400;
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "OPEN", retryAfterMs: 600 });
  });

  it("returns the transition with the health it left the provider in", async () => {
    t = 2500;
    await recordAll([ok(40), failed("timeout", 90), failed("HTTP 503", 70)]);
    const transition = await cb.record(P, failed("HTTP 502", 80));
    expect(transition).toEqual({
      provider: P,
      from: "CLOSED",
      to: "OPEN",
      at: iso(2500),
      health: {
        provider: P,
        circuit: "OPEN",
        successRate: 0.25,
        requests: 4,
        failures: 3,
        p50LatencyMs: 70,
        p95LatencyMs: 90,
        openedAt: iso(2500),
        lastError: "HTTP 502",
      },
    });
  });

  it("never opens on 429s, but pauses the provider for their Retry-After", async () => {
    expect(await recordAll(Array.from({ length: 8 }, () => rateLimited(2000)))).toEqual(
      Array(8).fill(null),
    );
    expect(await cb.health(P)).toMatchObject({
      circuit: "CLOSED",
      requests: 8,
      failures: 0,
      successRate: 1,
      lastError: "HTTP 429",
    });
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "CLOSED", retryAfterMs: 2000 });
    t += 1500;
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "CLOSED", retryAfterMs: 500 });
    t += 500;
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "CLOSED" });
  });

  it("counts 429s as requests but not failures, and pauses 1 s when there is no Retry-After", async () => {
    // 1 failure in 4 requests: 25%, under the threshold.
    expect(await recordAll([rateLimited(), rateLimited(), rateLimited(), failed()])).toEqual([
      null,
      null,
      null,
      null,
    ]);
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "CLOSED", retryAfterMs: 1000 });
    t += 1000;
    expect(await cb.acquire(P)).toMatchObject({ allowed: true });
  });

  it("lets exactly one of many concurrent callers through as the probe after the cool-down", async () => {
    await open();
    t += 1000;
    const decisions = await Promise.all(Array.from({ length: 20 }, () => cb.acquire(P)));
    const allowed = decisions.filter((d) => d.allowed);
    expect(allowed).toHaveLength(1);
    expect(allowed[0]).toMatchObject({
      state: "HALF_OPEN",
      transition: {
        from: "OPEN",
        to: "HALF_OPEN",
        at: iso(1000),
        health: { circuit: "HALF_OPEN", openedAt: iso(0), requests: 4, failures: 4 },
      },
    });
    for (const d of decisions.filter((d) => !d.allowed)) {
      expect(d).toEqual({ allowed: false, state: "HALF_OPEN" });
    }
  });

  it("closes when the probe succeeds, forgetting the failures that opened it", async () => {
    await open();
    t += 1000;
    expect((await cb.acquire(P)).allowed).toBe(true);
    t += 300;
    expect(await cb.record(P, ok(50))).toMatchObject({
      from: "HALF_OPEN",
      to: "CLOSED",
      at: iso(1300),
      health: { circuit: "CLOSED", requests: 1, failures: 0, successRate: 1, openedAt: null },
    });
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "CLOSED" });
    // With the old failures still counted, this one would reopen it (5 of 6).
    expect(await cb.record(P, failed())).toBeNull();
  });

  it("reopens when the probe fails, with a new openedAt", async () => {
    await open();
    t += 1000;
    await cb.acquire(P);
    t += 200;
    expect(await cb.record(P, failed("still down"))).toMatchObject({
      from: "HALF_OPEN",
      to: "OPEN",
      health: { circuit: "OPEN", openedAt: iso(1200), lastError: "still down" },
    });
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "OPEN", retryAfterMs: 1000 });
    expect((await cb.health(P)).openedAt).toBe(iso(1200));
  });

  it("hands the probe to another caller when the first never reports back", async () => {
    await open();
    t += 1000;
    expect((await cb.acquire(P)).allowed).toBe(true);
    t += 4999;
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "HALF_OPEN" });
    t += 1;
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "HALF_OPEN" });
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "HALF_OPEN" });
  });

  it("keeps a rate-limited probe half-open and hands out the next probe after the pause", async () => {
    await open();
    t += 1000;
    await cb.acquire(P);
    expect(await cb.record(P, rateLimited(500))).toBeNull();
    expect(await cb.acquire(P)).toEqual({ allowed: false, state: "HALF_OPEN", retryAfterMs: 500 });
    t += 500;
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "HALF_OPEN" });
  });

  it("forgets outcomes older than the window", async () => {
    await recordAll([failed(), failed()]);
    t = 5000;
    await recordAll([failed()]);
    t = 10_000;
    expect(await cb.health(P)).toMatchObject({ requests: 1, failures: 1 });
    // Four failures in all, but only two in the window: under minRequests.
    expect(await cb.record(P, failed())).toBeNull();
    t = 15_000;
    expect(await cb.health(P)).toMatchObject({ requests: 1, failures: 1 });
  });

  it("reports health: success rate, counts, p50/p95, last error, opened-at", async () => {
    const latencies = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    await recordAll(latencies.map((l, i) => (i < 7 ? ok(l) : failed(`err ${i}`, l))));
    expect(await cb.health(P)).toEqual({
      provider: P,
      circuit: "CLOSED",
      successRate: 0.7,
      requests: 10,
      failures: 3,
      p50LatencyMs: 50,
      p95LatencyMs: 100,
      openedAt: null,
      lastError: "err 9",
    });

    t = 3000;
    await open("fal");
    t = 4000;
    await cb.acquire("fal");
    expect(await cb.health("fal")).toMatchObject({ circuit: "HALF_OPEN", openedAt: iso(3000) });
  });

  it("reports a provider it has never seen as closed with empty stats", async () => {
    expect(await cb.health("never-seen")).toEqual({
      provider: "never-seen",
      circuit: "CLOSED",
      successRate: 1,
      requests: 0,
      failures: 0,
      p50LatencyMs: null,
      p95LatencyMs: null,
      openedAt: null,
      lastError: null,
    });
    expect(await cb.acquire("never-seen")).toEqual({ allowed: true, state: "CLOSED" });
  });

  it("keeps providers apart", async () => {
    await open("fal");
    expect((await cb.acquire("fal")).allowed).toBe(false);
    expect(await cb.acquire(P)).toEqual({ allowed: true, state: "CLOSED" });
  });

  it("refuses options that make no sense, with a sentence naming them", () => {
    expect(() => b.make({ minRequests: 0, failureThreshold: 1.5 }, now)).toThrow(ConfigError);
    expect(() => b.make({ minRequests: 0 }, now)).toThrow(/minRequests: must be a whole number/);
  });
});

describe("Redis circuit breaker across workers", () => {
  const conns = [new Redis(TEST_REDIS_URL), new Redis(TEST_REDIS_URL)];
  let prefix: string;
  let t: number;
  const now = () => t;
  let workers: RedisCircuitBreaker[];

  beforeEach(() => {
    t = 0;
    prefix = uniquePrefix();
    // Two instances with their own connections stand for two worker processes.
    workers = conns.map((c) => new RedisCircuitBreaker(c, prefix, OPTS, now));
  });
  afterEach(() => deletePrefix(prefix));
  afterAll(() => Promise.all(conns.map((c) => c.quit())));

  it("shares state: one worker opens the circuit and the other is refused", async () => {
    const [a, b] = workers as [RedisCircuitBreaker, RedisCircuitBreaker];
    for (let i = 0; i < 4; i++) await a.record(P, failed());
    expect(await b.acquire(P)).toEqual({ allowed: false, state: "OPEN", retryAfterMs: 1000 });
    expect(await b.health(P)).toMatchObject({ circuit: "OPEN", failures: 4 });

    t += 1000;
    const decisions = await Promise.all(
      Array.from({ length: 20 }, (_, i) => workers[i % 2]!.acquire(P)),
    );
    expect(decisions.filter((d) => d.allowed)).toHaveLength(1);

    expect(await b.record(P, ok())).toMatchObject({ from: "HALF_OPEN", to: "CLOSED" });
    expect(await a.acquire(P)).toEqual({ allowed: true, state: "CLOSED" });
  });

  it("lets its keys expire so idle providers cost nothing", async () => {
    const [a] = workers as [RedisCircuitBreaker];
    for (let i = 0; i < 4; i++) await a.record(P, failed());
    const keys = await conns[0]!.keys(`${prefix}:*`);
    expect(keys.sort()).toEqual(
      ["calls", "failures", "state"].map((k) => `${prefix}:cb:${P}:${k}`),
    );
    const maxTtl = OPTS.windowMs + OPTS.coolDownMs + OPTS.probeTimeoutMs;
    for (const key of keys) {
      const ttl = await conns[0]!.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(maxTtl);
    }
  });
});
