import { exactCacheKey, normalizePrompt, semanticScopeKey } from "../../src/cache/cache-key";
import { seedFromPrompt } from "../../src/generation/generation.validator";
import { InMemoryKeyValueStore } from "../../src/infra/kv/in-memory.kv";
import { loadConfig } from "../../src/config";

const BASE = {
  model: "sim-image-fast",
  mediaType: "IMAGE" as const,
  prompt: "A red fox in the snow",
  negativePrompt: null,
  width: 512,
  height: 512,
  durationSeconds: null,
  seed: 1234,
};

describe("exact cache key", () => {
  const key = exactCacheKey(BASE);

  it.each([
    ["case", { prompt: "a RED fox IN the SNOW" }],
    ["surrounding and repeated whitespace", { prompt: "  A red\tfox  in the\nsnow " }],
  ])("ignores the prompt's %s", (_rule, change) => {
    expect(exactCacheKey({ ...BASE, ...change })).toBe(key);
  });

  it("normalizes the negative prompt the same way", () => {
    expect(exactCacheKey({ ...BASE, negativePrompt: " Blurry  Text" })).toBe(
      exactCacheKey({ ...BASE, negativePrompt: "blurry text" }),
    );
  });

  it.each([
    ["model", { model: "sim-image-pro" }],
    ["prompt wording", { prompt: "A red fox in the rain" }],
    ["punctuation", { prompt: "A red fox, in the snow" }],
    ["negative prompt", { negativePrompt: "blurry" }],
    ["width", { width: 768 }],
    ["height", { height: 768 }],
    ["duration", { durationSeconds: 5 }],
    ["seed", { seed: 1235 }],
  ])("changes with the %s", (_field, change) => {
    expect(exactCacheKey({ ...BASE, ...change })).not.toBe(key);
  });

  it("has no place for user, account, priority or time", () => {
    // The key's inputs are exactly the output's parameters: extra fields change nothing.
    const withExtras = {
      ...BASE,
      userId: "u-1",
      accountId: "a",
      priority: "BATCH",
      at: Date.now(),
    };
    expect(exactCacheKey(withExtras)).toBe(key);
  });

  it("an absent negative prompt and an empty one are the same", () => {
    expect(exactCacheKey({ ...BASE, negativePrompt: "" })).toBe(key);
  });

  it("the derived seed makes the same normalized prompt the same key", () => {
    const a = { ...BASE, prompt: "A Red Fox", seed: seedFromPrompt("A Red Fox") };
    const b = { ...BASE, prompt: " a red  fox", seed: seedFromPrompt(" a red  fox") };
    expect(exactCacheKey(a)).toBe(exactCacheKey(b));
    expect(normalizePrompt(a.prompt)).toBe(normalizePrompt(b.prompt));
  });
});

describe("semantic scope", () => {
  const scope = semanticScopeKey(BASE);

  it("ignores the prompt and the seed (they are compared otherwise, or not at all)", () => {
    expect(semanticScopeKey({ ...BASE, prompt: "anything", seed: 1 } as typeof BASE)).toBe(scope);
  });

  it.each([
    ["model", { model: "sim-image-pro" }],
    ["media type", { mediaType: "VIDEO" as const }],
    ["size", { width: 1024 }],
    ["duration", { durationSeconds: 4 }],
    ["negative prompt", { negativePrompt: "text" }],
  ])("separates a different %s", (_f, change) => {
    expect(semanticScopeKey({ ...BASE, ...change })).not.toBe(scope);
  });
});

describe("in-memory key-value store (the embedded cache index)", () => {
  it("expires entries at their TTL and replaces on set", async () => {
    let now = 1_000;
    const kv = new InMemoryKeyValueStore(() => now);
    await kv.set("k", "a", 100);
    expect(await kv.get("k")).toBe("a");
    await kv.set("k", "b", 100);
    expect(await kv.get("k")).toBe("b");
    now += 99;
    expect(await kv.get("k")).toBe("b");
    now += 1;
    expect(await kv.get("k")).toBeNull();
    expect(await kv.setIfAbsent("k", "c", 100)).toBe(true);
    await kv.delete("k", "missing");
    expect(await kv.get("k")).toBeNull();
  });
});

describe("cache configuration", () => {
  it("defaults to a 24 h TTL and a 0.85 threshold with the local embedder", () => {
    const c = loadConfig({});
    expect(c.CACHE_TTL_SECONDS).toBe(86400);
    expect(c.SEMANTIC_CACHE_THRESHOLD).toBe(0.85);
    expect(c.SEMANTIC_CACHE).toBe(true);
    expect(c.EMBEDDINGS_URL).toBeUndefined();
  });

  it.each([
    ["SEMANTIC_CACHE_THRESHOLD", "0"],
    ["SEMANTIC_CACHE_THRESHOLD", "1.5"],
    ["SEMANTIC_CACHE_THRESHOLD", "high"],
    ["CACHE_TTL_SECONDS", "0"],
    ["CACHE_TTL_SECONDS", "1.5"],
    ["SEMANTIC_CACHE", "maybe"],
    ["EMBEDDINGS_URL", "localhost:11434"],
    ["EMBEDDINGS_DIMENSIONS", "4096"],
    ["EMBEDDINGS_TIMEOUT_MS", "10"],
    ["OUTPUT_RETENTION_HOURS", "0"],
    ["BUDGET_FREE_USD", "-1"],
    ["BUDGET_PRO_USD", "lots"],
    ["DEFAULT_TIER", "GOLD"],
  ])("refuses %s=%s", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
  });
});
