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

export function createRedis(url: string, name: string): Redis {
  return new Redis({ ...redisOptions(url), connectionName: name, lazyConnect: false });
}
