import { OutputUrlSigner } from "../../src/storage/object-store";
import { normalizePrompt, seedFromPrompt } from "../../src/generation/generation.validator";
import { backoffMs, pollDelayMs } from "../../src/generation/generation.processor";
import { ProviderError } from "../../src/providers";

describe("signed output URLs", () => {
  const signer = new OutputUrlSigner("https://gen.example.com", "s".repeat(32), 60);

  function parts(url: string) {
    const u = new URL(url);
    return {
      key: u.pathname.replace(/^\/files\//, ""),
      expires: u.searchParams.get("expires")!,
      sig: u.searchParams.get("sig")!,
    };
  }

  it("accepts its own link until it expires", () => {
    const now = Date.now();
    const { key, expires, sig } = parts(signer.sign("generations/g/1-0.png", now));
    expect(key).toBe("generations/g/1-0.png");
    expect(signer.verify(key, expires, sig, now + 59_000)).toBe(true);
    expect(signer.verify(key, expires, sig, now + 61_000)).toBe(false);
  });

  it("refuses a link for another key, another expiry or another secret", () => {
    const { key, expires, sig } = parts(signer.sign("generations/g/1-0.png"));
    expect(signer.verify("generations/h/1-0.png", expires, sig)).toBe(false);
    expect(signer.verify(key, String(Number(expires) + 3600), sig)).toBe(false);
    const other = new OutputUrlSigner("https://gen.example.com", "t".repeat(32), 60);
    expect(other.verify(key, expires, sig)).toBe(false);
    expect(signer.verify(key, undefined, undefined)).toBe(false);
  });
});

describe("prompt normalization and seeds", () => {
  it("ignores case and spacing", () => {
    expect(normalizePrompt("  A  Red\tFox \n")).toBe("a red fox");
    expect(seedFromPrompt("A red fox")).toBe(seedFromPrompt("a  red fox "));
  });

  it("derives a seed in the GraphQL Int range", () => {
    for (const p of ["a", "b", "sunset", "x".repeat(4000)]) {
      const s = seedFromPrompt(p);
      expect(Number.isInteger(s) && s >= 0 && s <= 2 ** 31 - 1).toBe(true);
    }
  });
});

describe("retry backoff", () => {
  it("honours Retry-After, capped at a minute", () => {
    expect(backoffMs(1, new ProviderError("slow down", "RATE_LIMITED", true, 2500))).toBe(2500);
    expect(backoffMs(1, new ProviderError("slow down", "RATE_LIMITED", true, 600_000))).toBe(
      60_000,
    );
  });

  it("grows exponentially with jitter under a cap", () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const d = backoffMs(attempt, new Error("x"));
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(10_000, 500 * 2 ** (attempt - 1)));
    }
  });
});

describe("status polling", () => {
  it("backs off with the job's age between the bounds when the provider gives no hint", () => {
    expect(pollDelayMs(undefined, 0, 500, 5000)).toBe(500);
    expect(pollDelayMs(undefined, 10_000, 500, 5000)).toBe(2000);
    expect(pollDelayMs(undefined, 600_000, 500, 5000)).toBe(5000);
  });

  it("follows the provider's hint, within the bounds", () => {
    expect(pollDelayMs(1000, 600_000, 500, 5000)).toBe(1000);
    expect(pollDelayMs(10, 0, 500, 5000)).toBe(500);
    expect(pollDelayMs(60_000, 0, 500, 5000)).toBe(5000);
  });
});
