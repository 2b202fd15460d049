import { CACHE_PROMPTS, replaySequence, type VariantKind } from "../../bench/data/cache-prompts";
import { LexicalEmbedder } from "../../src/cache";

const THRESHOLD = 0.85;

function cosine(a: number[], b: number[]): number {
  return a.reduce((s, x, i) => s + x * b[i]!, 0);
}

describe("the labelled cache prompts", () => {
  it("has about 60 base prompts of every media type, each with variants of both verdicts", () => {
    expect(CACHE_PROMPTS.length).toBeGreaterThanOrEqual(55);
    expect(new Set(CACHE_PROMPTS.map((p) => p.id)).size).toBe(CACHE_PROMPTS.length);
    expect(new Set(CACHE_PROMPTS.map((p) => p.mediaType))).toEqual(
      new Set(["IMAGE", "AUDIO", "VIDEO"]),
    );
    for (const p of CACHE_PROMPTS) {
      expect(p.variants.some((v) => v.kind === "exact")).toBe(true);
      expect(p.variants.some((v) => v.kind === "paraphrase")).toBe(true);
      expect(p.variants.some((v) => !v.shouldHit && v.change)).toBe(true);
      for (const v of p.variants) {
        expect(v.shouldHit).toBe(v.kind !== "near-duplicate");
        expect(v.text).not.toBe(p.prompt);
      }
    }
  });

  describe("under the lexical embedder at 0.85", () => {
    const embedder = new LexicalEmbedder();
    const pairs = CACHE_PROMPTS.flatMap((p) => {
      const base = embedder.embedText(p.prompt);
      return p.variants.map((v) => ({
        prompt: p.prompt,
        ...v,
        similarity: cosine(base, embedder.embedText(v.text)),
      }));
    });
    const of = (kind: VariantKind) => pairs.filter((p) => p.kind === kind);
    const hits = (kind: VariantKind) => of(kind).filter((p) => p.similarity >= THRESHOLD);

    afterAll(() => {
      const line = (kind: VariantKind) => `${kind}: ${hits(kind).length}/${of(kind).length} hit`;
      console.log(
        [
          `lexical embedder, ${pairs.length} labelled pairs at ${THRESHOLD}:`,
          ...(["exact", "paraphrase", "synonym", "near-duplicate"] as const).map(line),
        ].join("\n"),
      );
    });

    it("never hits a near-duplicate", () => {
      expect(hits("near-duplicate").map((p) => [p.prompt, p.text, p.similarity])).toEqual([]);
      expect(of("near-duplicate").length).toBeGreaterThanOrEqual(120);
    });

    it("hits every exact repeat", () => {
      expect(hits("exact")).toHaveLength(of("exact").length);
    });

    it("hits at least 95% of the paraphrases (measured: 119 of 122)", () => {
      expect(hits("paraphrase").length / of("paraphrase").length).toBeGreaterThanOrEqual(0.95);
    });
  });
});

describe("replaySequence", () => {
  it("is the same for the same seed and differs for another", () => {
    expect(replaySequence({ seed: 7 })).toEqual(replaySequence({ seed: 7 }));
    expect(replaySequence({ seed: 7 })).not.toEqual(replaySequence({ seed: 8 }));
  });

  it("gives 1000 requests by default, drawn from the labelled texts", () => {
    const replay = replaySequence();
    const texts = new Set(
      CACHE_PROMPTS.flatMap((p) => [p.prompt, ...p.variants.map((v) => v.text)]),
    );

    expect(replay).toHaveLength(1000);
    for (const r of replay) expect(texts.has(r.text)).toBe(true);
    expect(replaySequence({ requests: 50 })).toHaveLength(50);
  });

  it("repeats a few prompts often and most rarely", () => {
    const counts = new Map<string, number>();
    for (const r of replaySequence({ seed: 3 })) {
      counts.set(r.promptId, (counts.get(r.promptId) ?? 0) + 1);
    }
    const sorted = [...counts.values()].sort((a, b) => b - a);

    // Zipf with s = 1.1 over 61 prompts: the top one draws a quarter, the top ten two thirds.
    expect(sorted[0]!).toBeGreaterThan(120);
    expect(sorted.slice(0, 10).reduce((a, b) => a + b, 0)).toBeGreaterThan(550);
    expect(sorted[sorted.length - 1]!).toBeLessThan(10);
  });

  it("puts a prompt and its rewordings in one group, each near-duplicate in its own", () => {
    const replay = replaySequence({ seed: 5 });
    for (const r of replay) {
      if (r.kind === "near-duplicate") expect(r.group).not.toBe(r.promptId);
      else expect(r.group).toBe(r.promptId);
    }
    expect(new Set(replay.map((r) => r.kind))).toEqual(
      new Set(["base", "exact", "paraphrase", "synonym", "near-duplicate"]),
    );
  });
});
