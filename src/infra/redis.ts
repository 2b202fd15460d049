import Redis, { type RedisOptions } from "ioredis";

/** Where Redis is: a `redis://` or `rediss://` URL, and optionally the Sentinels that know its master. */
export interface RedisTarget {
  url: string;
  /** `host:port` of each sentinel, comma-separated (REDIS_SENTINELS). */
  sentinels?: string;
  /** The master group's name (REDIS_SENTINEL_NAME). @defaultValue "mymaster" */
  sentinelName?: string;
  sentinelPassword?: string;
}

/**
 * Connection options for ioredis and BullMQ alike. With sentinels, ioredis asks them for the
 * current master (and again after a failover); the URL then gives only credentials, database
 * and TLS.
 */
export function redisOptions(target: string | RedisTarget): RedisOptions {
  const t = typeof target === "string" ? { url: target } : target;
  const u = new URL(t.url);
  const tls = u.protocol === "rediss:" ? {} : undefined;
  const common: RedisOptions = {
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls,
    // BullMQ workers block on Redis; a command must wait for the connection rather than fail.
    maxRetriesPerRequest: null,
  };
  if (!t.sentinels) return { ...common, host: u.hostname, port: Number(u.port || 6379) };
  return {
    ...common,
    sentinels: parseHostPorts(t.sentinels),
    name: t.sentinelName ?? "mymaster",
    sentinelPassword: t.sentinelPassword,
    enableTLSForSentinelMode: tls !== undefined,
    // Listen for +switch-master on the sentinels and reconnect at once, rather than only when
    // the old master, now a replica, refuses a write.
    failoverDetector: true,
  };
}

/** `a:26379, b:26379, [::1]:26379` as ioredis sentinel addresses. */
export function parseHostPorts(list: string): Array<{ host: string; port: number }> {
  return list.split(",").map((entry) => {
    const item = entry.trim();
    const colon = item.lastIndexOf(":");
    const host = item.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    return { host, port: Number(item.slice(colon + 1)) };
  });
}

/**
 * A Redis client. With `pipelined`, commands issued in the same turn of the event loop (a
 * generation's three PUBLISHes, many requests' rate-limit scripts and cache reads under load)
 * leave in one write: fewer system calls on both sides, same order, same answers. Not for a
 * connection that subscribes or blocks.
 */
export function createRedis(
  target: string | RedisTarget,
  name: string,
  opts: { pipelined?: boolean } = {},
): Redis {
  return new Redis({
    ...redisOptions(target),
    connectionName: name,
    lazyConnect: false,
    enableAutoPipelining: opts.pipelined ?? false,
  });
}
