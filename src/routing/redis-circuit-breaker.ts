/*
 * Why no library: opossum and cockatiel, the maintained Node resilience libraries, keep a
 * breaker's state in the process. Both can export and re-hydrate it (opossum's `toJSON` /
 * `state` option, cockatiel's serialised state), but neither has a store interface, and
 * copying state in and out of Redis around their calls would race: two workers could both
 * see OPEN-past-cool-down and both send a probe. Their maintainers declined shared state
 * for that reason (nodeshift/opossum#675, connor4312/cockatiel#89). What makes a shared
 * breaker correct is an atomic check-and-set per decision, so each call here is one Lua
 * script; the state machine is small enough that owning it is cheaper than adapting one.
 */
import { randomBytes } from "node:crypto";
import type Redis from "ioredis";
import type {
  CircuitBreaker,
  CircuitBreakerOptions,
  CircuitOutcome,
  CircuitState,
  CircuitTransition,
  ProviderHealthSnapshot,
} from "./circuit-breaker";
import {
  healthSnapshot,
  outcomeError,
  outcomeKind,
  rateLimitPauseMs,
  resolveCircuitOptions,
  type CircuitDecision,
  type OutcomeKind,
  type WindowEntry,
} from "./in-memory-circuit-breaker";

// Keys of one provider: KEYS[1] the state hash (state, openedAt, probeAt, pausedUntil,
// lastError; an absent field means none), KEYS[2] every call in the window, KEYS[3] the
// failures among them. Both sorted sets are scored by time (ms) with members
// `${at}:${random}:${kind}:${latencyMs}`, so ZCARD counts and the members carry latencies.
// Times come from the caller's clock as ARGV, never Redis TIME, so tests can drive them.
const LUA_PRELUDE = `
local function num(v) if v then return tonumber(v) end return nil end
`;

/**
 * ARGV: now, windowMs, coolDownMs, probeTimeoutMs, stateTtlMs.
 * Returns {allowed, state, retryAfterMs (-1: none)} and, when this call turned OPEN into
 * HALF_OPEN, also {from, openedAt, lastError, window members}.
 */
const ACQUIRE_LUA = `${LUA_PRELUDE}
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'state', 'openedAt', 'probeAt', 'pausedUntil', 'lastError')
local state = h[1] or 'CLOSED'
local paused = 0
local pausedUntil = num(h[4])
if pausedUntil and pausedUntil > now then paused = pausedUntil - now end

if state == 'CLOSED' then
  if paused > 0 then return {0, state, paused} end
  return {1, state, -1}
end

if state == 'OPEN' then
  local coolDownLeft = (num(h[2]) or 0) + tonumber(ARGV[3]) - now
  if coolDownLeft > 0 or paused > 0 then return {0, state, math.max(coolDownLeft, paused)} end
  redis.call('HSET', KEYS[1], 'state', 'HALF_OPEN', 'probeAt', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  local members = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now - tonumber(ARGV[2])), '+inf')
  return {1, 'HALF_OPEN', -1, 'OPEN', h[2] or '', h[5] or '', members}
end

-- HALF_OPEN: one probe at a time; a probe never heard from frees the slot after its timeout.
if paused > 0 then return {0, state, paused} end
local probeAt = num(h[3])
if probeAt and now - probeAt < tonumber(ARGV[4]) then return {0, state, -1} end
redis.call('HSET', KEYS[1], 'probeAt', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, state, -1}
`;

/**
 * ARGV: now, windowMs, minRequests, failureThreshold, member, kind, error, pauseMs, stateTtlMs.
 * Returns {} when the state did not change, else {from, to, openedAt, lastError, window members}.
 */
const RECORD_LUA = `${LUA_PRELUDE}
local now = tonumber(ARGV[1])
local windowMs = tonumber(ARGV[2])
local kind = ARGV[6]
local cutoff = now - windowMs
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)

local h = redis.call('HMGET', KEYS[1], 'state', 'openedAt', 'pausedUntil', 'lastError')
local state = h[1] or 'CLOSED'
local openedAt = h[2] or ''
local lastError = h[4] or ''
local pausedUntil = num(h[3]) or 0
if kind ~= 'ok' then
  lastError = ARGV[7]
  redis.call('HSET', KEYS[1], 'lastError', lastError)
end
if kind == 'rateLimited' and now + tonumber(ARGV[8]) > pausedUntil then
  pausedUntil = now + tonumber(ARGV[8])
  redis.call('HSET', KEYS[1], 'pausedUntil', pausedUntil)
end

local from = state
if state == 'HALF_OPEN' then
  -- The probe's verdict. A 429 says nothing about health: free the slot for the next probe.
  redis.call('HDEL', KEYS[1], 'probeAt')
  if kind == 'ok' then
    -- Close with a clean slate, or the failures that opened it would reopen it at once.
    redis.call('DEL', KEYS[2], KEYS[3])
    state = 'CLOSED'
    openedAt = ''
    redis.call('HSET', KEYS[1], 'state', state)
    redis.call('HDEL', KEYS[1], 'openedAt')
  elseif kind == 'failed' then
    state = 'OPEN'
    openedAt = ARGV[1]
    redis.call('HSET', KEYS[1], 'state', state, 'openedAt', openedAt)
  end
end

redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
if kind == 'failed' then redis.call('ZADD', KEYS[3], ARGV[1], ARGV[5]) end
if state == 'CLOSED' and kind == 'failed' then
  local requests = redis.call('ZCARD', KEYS[2])
  local failures = redis.call('ZCARD', KEYS[3])
  if requests >= tonumber(ARGV[3]) and failures / requests >= tonumber(ARGV[4]) then
    state = 'OPEN'
    openedAt = ARGV[1]
    redis.call('HSET', KEYS[1], 'state', state, 'openedAt', openedAt)
  end
end

-- Idle providers cost nothing: the window goes once all of it is stale, the state once an
-- open circuit would have cooled down and timed out its probe (or the pause has ended).
redis.call('PEXPIRE', KEYS[2], windowMs)
redis.call('PEXPIRE', KEYS[3], windowMs)
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tonumber(ARGV[9]), pausedUntil - now)))

if state == from then return {} end
return {from, state, openedAt, lastError, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cutoff, '+inf')}
`;

const ACQUIRE_COMMAND = "gengateCircuitAcquire";
const RECORD_COMMAND = "gengateCircuitRecord";

/** The scripts as ioredis `defineCommand` adds them (EVALSHA, falling back to EVAL). */
interface CircuitCommands {
  [ACQUIRE_COMMAND](
    state: string,
    calls: string,
    ...args: Array<string | number>
  ): Promise<unknown>;
  [RECORD_COMMAND](
    state: string,
    calls: string,
    failures: string,
    ...args: Array<string | number>
  ): Promise<unknown>;
}

/** The last four are there only when this call moved OPEN to HALF_OPEN. */
type AcquireReply = [number, CircuitState, number, CircuitState?, string?, string?, string[]?];
type RecordReply = [] | [CircuitState, CircuitState, string, string, string[]];

/**
 * Circuit breakers shared by every worker through Redis: state transitions for a provider
 * happen inside one Lua script per call, so of many workers acquiring at once after the
 * cool-down exactly one gets the half-open probe. Keys carry the deployment prefix and
 * expire when a provider goes idle. Workers' clocks are trusted to agree (NTP) to well
 * under the cool-down and window.
 */
export class RedisCircuitBreaker implements CircuitBreaker {
  private readonly opts: CircuitBreakerOptions;
  private readonly stateTtlMs: number;
  private readonly commands: CircuitCommands;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    opts: Partial<CircuitBreakerOptions> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.opts = resolveCircuitOptions(opts);
    this.stateTtlMs = Math.ceil(
      this.opts.windowMs + this.opts.coolDownMs + this.opts.probeTimeoutMs,
    );
    redis.defineCommand(ACQUIRE_COMMAND, { lua: ACQUIRE_LUA, numberOfKeys: 2 });
    redis.defineCommand(RECORD_COMMAND, { lua: RECORD_LUA, numberOfKeys: 3 });
    this.commands = redis as unknown as CircuitCommands;
  }

  async acquire(provider: string): Promise<CircuitDecision> {
    const now = this.now();
    const k = this.keys(provider);
    const reply = (await this.commands[ACQUIRE_COMMAND](
      k.state,
      k.calls,
      now,
      Math.ceil(this.opts.windowMs),
      this.opts.coolDownMs,
      this.opts.probeTimeoutMs,
      this.stateTtlMs,
    )) as AcquireReply;
    const [allowed, state, retryAfterMs, from, openedAt, lastError, members] = reply;
    const decision: CircuitDecision = { allowed: allowed === 1, state };
    if (retryAfterMs >= 0) decision.retryAfterMs = retryAfterMs;
    if (from) {
      decision.transition = this.transition(
        provider,
        from,
        state,
        now,
        openedAt ?? "",
        lastError ?? "",
        members ?? [],
      );
    }
    return decision;
  }

  async record(provider: string, outcome: CircuitOutcome): Promise<CircuitTransition | null> {
    const now = this.now();
    const k = this.keys(provider);
    const kind = outcomeKind(outcome);
    const member = `${now}:${randomBytes(6).toString("hex")}:${kind}:${outcome.latencyMs}`;
    const reply = (await this.commands[RECORD_COMMAND](
      k.state,
      k.calls,
      k.failures,
      now,
      Math.ceil(this.opts.windowMs),
      this.opts.minRequests,
      this.opts.failureThreshold,
      member,
      kind,
      outcomeError(outcome) ?? "",
      Math.ceil(rateLimitPauseMs(outcome)),
      this.stateTtlMs,
    )) as RecordReply;
    if (reply.length === 0) return null;
    const [from, to, openedAt, lastError, members] = reply;
    return this.transition(provider, from, to, now, openedAt, lastError, members);
  }

  async health(provider: string): Promise<ProviderHealthSnapshot> {
    const k = this.keys(provider);
    // One MULTI, so the state and the window are read at the same instant.
    const results = await this.redis
      .multi()
      .hmget(k.state, "state", "openedAt", "lastError")
      .zrangebyscore(k.calls, `(${this.now() - this.opts.windowMs}`, "+inf")
      .exec();
    if (!results) throw new Error("Redis aborted the circuit health read");
    for (const [err] of results) if (err) throw err;
    const [state, openedAt, lastError] = results[0]![1] as Array<string | null>;
    const members = results[1]![1] as string[];
    return healthSnapshot(
      provider,
      (state as CircuitState | null) ?? "CLOSED",
      openedAt ? Number(openedAt) : null,
      lastError || null,
      members.map(parseMember),
    );
  }

  private transition(
    provider: string,
    from: CircuitState,
    to: CircuitState,
    now: number,
    openedAt: string,
    lastError: string,
    members: string[],
  ): CircuitTransition {
    return {
      provider,
      from,
      to,
      at: new Date(now).toISOString(),
      health: healthSnapshot(
        provider,
        to,
        openedAt ? Number(openedAt) : null,
        lastError || null,
        members.map(parseMember),
      ),
    };
  }

  private keys(provider: string) {
    const base = `${this.prefix}:cb:${provider}`;
    return { state: `${base}:state`, calls: `${base}:calls`, failures: `${base}:failures` };
  }
}

function parseMember(member: string): WindowEntry {
  const [, , kind, latency] = member.split(":");
  return { kind: kind as OutcomeKind, latencyMs: Number(latency) };
}
