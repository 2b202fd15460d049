import { randomBytes } from "node:crypto";
import Redis from "ioredis";

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** A key prefix of its own for each test file, so files running side by side never meet. */
export function uniquePrefix(): string {
  return `gengate-test-${randomBytes(4).toString("hex")}`;
}

/**
 * Deletes every key under the prefix (queue, cache, breaker state): FLUSHALL for one
 * deployment, without touching the other test files sharing this Redis. Returns the count.
 */
export async function deletePrefix(prefix: string): Promise<number> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 3 });
  let deleted = 0;
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
      cursor = next;
      if (keys.length) deleted += await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  return deleted;
}
