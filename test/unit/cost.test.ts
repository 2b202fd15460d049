import { estimateCost } from "../../src/cost/cost-estimator";
import { PROVIDER_MODELS, routePricing, StaticModelCatalog } from "../../src/cost/model-catalog";
import { selectModel } from "../../src/cost/model-selector";
import { OpenAIBatchApi } from "../../src/providers/openai";

const catalog = new StaticModelCatalog();

describe("cost estimate", () => {
  it("charges a per-image model the same whatever the size", () => {
    const m = catalog.get("sim-image-fast")!;
    const small = estimateCost(m, { width: 256, height: 256, priority: "STANDARD" });
    const large = estimateCost(m, { width: 1024, height: 1024, priority: "STANDARD" });
    expect(small.estimatedCostUsd).toBe(0.003);
    expect(large.estimatedCostUsd).toBe(0.003);
    expect(small.breakdown.resolutionMultiplier).toBe(1);
  });

  it("scales a per-megapixel model with the output area", () => {
    const m = catalog.get("sim-image-standard")!;
    const e = estimateCost(m, { width: 2048, height: 2048, priority: "STANDARD" });
    expect(e.breakdown.resolutionMultiplier).toBeCloseTo(4.1943, 4);
    expect(e.estimatedCostUsd).toBeCloseTo(0.025 * 4.194304, 6);
  });

  it("multiplies a per-second model by the duration", () => {
    const m = catalog.get("sim-video")!;
    const e = estimateCost(m, {
      width: 512,
      height: 512,
      durationSeconds: 4,
      priority: "STANDARD",
    });
    expect(e.breakdown.durationMultiplier).toBe(4);
    expect(e.estimatedCostUsd).toBeCloseTo(0.2, 6);
  });

  it("halves the price of batch priority", () => {
    const m = catalog.get("sim-image-fast")!;
    const e = estimateCost(m, { priority: "BATCH" });
    expect(e.breakdown.batchDiscount).toBe(0.5);
    expect(e.estimatedCostUsd).toBe(0.0015);
  });

  it("rounds to micro-dollars", () => {
    const m = catalog.get("sim-image-standard")!;
    const e = estimateCost(m, { width: 1000, height: 1000, priority: "STANDARD" });
    expect(Number.isInteger(e.estimatedCostUsd * 1e6)).toBe(true);
  });
});

describe("model selection", () => {
  it("picks the cheapest model that meets the quality asked for", () => {
    expect(selectModel(catalog, { mediaType: "IMAGE", quality: 3 })?.name).toBe("sim-image-fast");
    expect(selectModel(catalog, { mediaType: "IMAGE", quality: 5 })?.name).toBe(
      "sim-image-standard",
    );
    expect(selectModel(catalog, { mediaType: "IMAGE", quality: 9 })?.name).toBe("sim-image-pro");
  });

  it("falls back to the best model when none reaches the quality", () => {
    expect(selectModel(catalog, { mediaType: "AUDIO", quality: 10 })?.name).toBe("sim-audio");
  });

  it("never picks a deprecated model", () => {
    const c = new StaticModelCatalog([
      { ...catalog.get("sim-image-fast")!, deprecated: true },
      catalog.get("sim-image-pro")!,
    ]);
    expect(selectModel(c, { mediaType: "IMAGE", quality: 1 })?.name).toBe("sim-image-pro");
  });
});

describe("batch prices", () => {
  it("gives every OpenAI model in the catalog OpenAI's own batch discount", () => {
    const openai = new OpenAIBatchApi({ apiKey: "sk-x", baseUrl: "http://127.0.0.1:1/v1" });
    const routed = PROVIDER_MODELS.filter((m) => m.routes.some((r) => r.provider === "openai"));
    expect(routed.map((m) => m.name)).toContain("gpt-image-1.5");
    for (const m of routed) {
      expect(routePricing(m, "openai").batchDiscount).toBe(openai.discount);
      const batch = estimateCost(m, { priority: "BATCH", provider: "openai" }).estimatedCostUsd;
      const plain = estimateCost(m, { priority: "STANDARD", provider: "openai" }).estimatedCostUsd;
      expect(batch).toBe(plain * (1 - openai.discount));
    }
  });
});
