import { ApiKeyCache } from "../../src/auth/api-key.cache";

const key = { id: "k1", role: "PARTNER" as const, accountId: "a1" };

describe("ApiKeyCache", () => {
  it("reads a found key once within its TTL", async () => {
    const cache = new ApiKeyCache({ ttlMs: 60_000 });
    const load = jest.fn(async () => key);
    await cache.get("h1", load);
    expect(await cache.get("h1", load)).toEqual(key);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it("never remembers an unknown key", async () => {
    const cache = new ApiKeyCache({ ttlMs: 60_000 });
    const load = jest.fn(async () => null);
    await cache.get("h1", load);
    await cache.get("h1", load);
    expect(load).toHaveBeenCalledTimes(2);
  });

  it("reads again once the TTL has passed", async () => {
    const cache = new ApiKeyCache({ ttlMs: 1 });
    const load = jest.fn(async () => key);
    await cache.get("h1", load);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await cache.get("h1", load);
    expect(load).toHaveBeenCalledTimes(2);
  });

  it("forgets a revoked key by id", async () => {
    const cache = new ApiKeyCache({ ttlMs: 60_000 });
    await cache.get("h1", async () => key);
    cache.forget("k1");
    const load = jest.fn(async () => null);
    expect(await cache.get("h1", load)).toBeNull();
    expect(load).toHaveBeenCalledTimes(1);
  });

  it("does not store a read that started before a revocation", async () => {
    const cache = new ApiKeyCache({ ttlMs: 60_000 });
    let finish!: (k: typeof key) => void;
    const slow = cache.get("h1", () => new Promise((resolve) => (finish = resolve)));
    cache.forget("k1");
    finish(key);
    await slow;
    const load = jest.fn(async () => null);
    expect(await cache.get("h1", load)).toBeNull();
    expect(load).toHaveBeenCalledTimes(1);
  });
});
