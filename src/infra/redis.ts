import Redis, { type RedisOptions } from "ioredis";

/** Connection options from a `redis://` URL, for ioredis and BullMQ alike. */
export function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    tls: u.protocol === "rediss:" ? {} : undefined,
    // BullMQ workers block on Redis; a command must wait for the connection rather than fail.
    maxRetriesPerRequest: null,
  };
}

/**
 * A Redis client. With `pipelined`, commands issued in the same turn of the event loop (a
 * generation's three PUBLISHes, many requests' rate-limit scripts and cache reads under load)
 * leave in one write: fewer system calls on both sides, same order, same answers. Not for a
 * connection that subscribes or blocks.
 */
export function createRedis(url: string, name: string, opts: { pipelined?: boolean } = {}): Redis {
  return new Redis({
    ...redisOptions(url),
    connectionName: name,
    lazyConnect: false,
    enableAutoPipelining: opts.pipelined ?? false,
  });
}
