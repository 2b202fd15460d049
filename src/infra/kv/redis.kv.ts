import type Redis from "ioredis";
import type { KeyValueStore } from "./key-value";

/** Shared by every process through Redis; keys carry the deployment prefix. */
export class RedisKeyValueStore implements KeyValueStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.k(key), value, "PX", ttlMs, "NX")) === "OK";
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.k(key), value, "PX", ttlMs);
  }

  get(key: string): Promise<string | null> {
    return this.redis.get(this.k(key));
  }

  async delete(...keys: string[]): Promise<void> {
    if (keys.length > 0) await this.redis.del(...keys.map((k) => this.k(k)));
  }

  private k(key: string): string {
    return `${this.prefix}:kv:${key}`;
  }
}
