import { worstCaseCost } from "../../src/cost/cost-estimator";
import { StaticModelCatalog, type ModelDefinition } from "../../src/cost/model-catalog";
import { fallbackChain } from "../../src/routing/fallback-chain";

const LIMITS = { minSize: 64, maxSize: 2048, defaultWidth: 1024, defaultHeight: 1024 };
const model = (
  name: string,
  quality: number,
  baseUsd: number,
  extra: Partial<ModelDefinition> = {},
): ModelDefinition => ({
  name,
  mediaType: "IMAGE",
  quality,
  pricing: { baseUsd },
  limits: LIMITS,
  routes: [{ provider: "a", model: name }],
  typicalSeconds: 1,
  timeoutSeconds: 60,
  ...extra,
});

const catalog = new StaticModelCatalog([
  model("cheap", 3, 0.002, { alternates: ["mid", "premium"] }),
  model("mid", 6, 0.01),
  model("premium", 9, 0.05, {
    routes: [
      { provider: "a", model: "premium" },
      { provider: "b", model: "premium-b", pricing: { baseUsd: 0.08 } },
    ],
  }),
]);

describe("fallback chain within the tier", () => {
  const names = (maxQuality?: number) =>
    fallbackChain(catalog, "cheap", undefined, () => true, maxQuality).map((c) => c.model.name);

  it("tries every alternate without a ceiling", () => {
    expect(names()).toEqual(["cheap", "mid", "premium", "premium"]);
  });

  it("leaves out alternates above the tier's ceiling", () => {
    expect(names(4)).toEqual(["cheap"]);
    expect(names(7)).toEqual(["cheap", "mid"]);
  });

  it("keeps fallbacks the request named (they were checked against the tier)", () => {
    expect(
      fallbackChain(catalog, "cheap", ["premium"], () => true, 4).map((c) => c.model.name),
    ).toEqual(["cheap", "premium", "premium"]);
  });
});

describe("what a request holds against its budget", () => {
  it("is the dearest place along its chain, at full price", () => {
    const chain = fallbackChain(catalog, "cheap", undefined, () => true);
    expect(worstCaseCost(chain, { width: 1024, height: 1024 })).toBeCloseTo(
      Math.max(...chain.map((c) => (c.route.provider === "b" ? 0.08 : c.model.pricing.baseUsd))),
      6,
    );
  });

  it("is the first choice's price when the chain has nothing dearer", () => {
    const chain = fallbackChain(catalog, "cheap", undefined, () => true, 4);
    expect(worstCaseCost(chain, {})).toBeCloseTo(0.002, 6);
  });
});
