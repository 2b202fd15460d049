import { BadInputError } from "../../src/common/errors";
import type { Tier } from "../../src/entities";
import { estimateCost } from "../../src/cost/cost-estimator";
import {
  BUILTIN_MODELS,
  PROVIDER_MODELS,
  StaticModelCatalog,
  type ModelDefinition,
} from "../../src/cost/model-catalog";
import {
  qualityClass,
  selectModel,
  selectionBounds,
  type ContentType,
} from "../../src/cost/model-selector";
import { validateGenerateRequest } from "../../src/generation/generation.validator";

/** One model at each class boundary (1, 4 | 5, 7 | 8, 10), dearer as quality rises. */
function model(name: string, quality: number, baseUsd: number): ModelDefinition {
  return {
    name,
    mediaType: "IMAGE",
    quality,
    pricing: { baseUsd },
    limits: { minSize: 64, maxSize: 2048, defaultWidth: 1024, defaultHeight: 1024 },
    routes: [{ provider: "simulated", model: "sim/image" }],
    typicalSeconds: 1,
    timeoutSeconds: 60,
  };
}
const boundaries = new StaticModelCatalog([
  model("e1", 1, 0.001),
  model("e4", 4, 0.002),
  model("s5", 5, 0.01),
  model("s7", 7, 0.02),
  model("p8", 8, 0.04),
  model("p10", 10, 0.08),
]);

const QUALITIES = [undefined, 1, 4, 5, 7, 8, 10] as const;
type Row = Record<`${(typeof QUALITIES)[number]}`, string>;

/** Expected model per quality asked (undefined = the default, 5). */
const PAID: Record<ContentType, Row> = {
  GENERAL: { undefined: "s5", 1: "e1", 4: "e4", 5: "s5", 7: "s7", 8: "p8", 10: "p10" },
  // One class down: standard asks may use economy, premium asks standard; economy stays.
  SOCIAL: { undefined: "e1", 1: "e1", 4: "e4", 5: "e1", 7: "e1", 8: "s5", 10: "s5" },
  CLIENT: { undefined: "p8", 1: "p8", 4: "p8", 5: "p8", 7: "p8", 8: "p8", 10: "p10" },
  PRINT: { undefined: "p8", 1: "p8", 4: "p8", 5: "p8", 7: "p8", 8: "p8", 10: "p10" },
};
/** FREE is held to the economy class: beyond it, the best economy model. */
const FREE: Record<"GENERAL" | "SOCIAL", Row> = {
  GENERAL: { undefined: "e4", 1: "e1", 4: "e4", 5: "e4", 7: "e4", 8: "e4", 10: "e4" },
  SOCIAL: { undefined: "e1", 1: "e1", 4: "e4", 5: "e1", 7: "e1", 8: "e4", 10: "e4" },
};

describe("quality classes", () => {
  it.each([
    [1, "ECONOMY"],
    [4, "ECONOMY"],
    [5, "STANDARD"],
    [7, "STANDARD"],
    [8, "PREMIUM"],
    [10, "PREMIUM"],
  ])("quality %i is %s", (q, cls) => {
    expect(qualityClass(q)).toBe(cls);
  });
});

describe("selection policy: tier × content type × quality", () => {
  const paidTiers: Array<Tier | undefined> = ["PRO", "ENTERPRISE", undefined];
  for (const tier of paidTiers) {
    for (const contentType of [undefined, "GENERAL", "SOCIAL", "CLIENT", "PRINT"] as const) {
      for (const quality of QUALITIES) {
        const expected = PAID[contentType ?? "GENERAL"][`${quality}`];
        it(`${tier ?? "unknown tier"}, ${contentType ?? "no content type"}, quality ${quality ?? "default"} → ${expected}`, () => {
          expect(
            selectModel(boundaries, { mediaType: "IMAGE", quality, contentType, tier })?.name,
          ).toBe(expected);
        });
      }
    }
  }

  for (const contentType of [undefined, "GENERAL", "SOCIAL"] as const) {
    for (const quality of QUALITIES) {
      const expected = FREE[contentType ?? "GENERAL"][`${quality}`];
      it(`FREE, ${contentType ?? "no content type"}, quality ${quality ?? "default"} → ${expected}`, () => {
        expect(
          selectModel(boundaries, { mediaType: "IMAGE", quality, contentType, tier: "FREE" })?.name,
        ).toBe(expected);
      });
    }
  }

  for (const contentType of ["CLIENT", "PRINT"] as const) {
    for (const quality of QUALITIES) {
      it(`FREE, ${contentType}, quality ${quality ?? "default"} is refused on contentType`, () => {
        expect.assertions(2);
        try {
          selectModel(boundaries, { mediaType: "IMAGE", quality, contentType, tier: "FREE" });
        } catch (err) {
          expect(err).toBeInstanceOf(BadInputError);
          expect((err as BadInputError).extensions.field).toBe("contentType");
        }
      });
    }
  }

  it("states the bounds it applies", () => {
    expect(selectionBounds({ quality: 9, contentType: "SOCIAL" }, "ECONOMY")).toEqual({
      minQuality: 5,
      maxQuality: 10,
    });
    expect(selectionBounds({ quality: 3, contentType: "PRINT" }, "ECONOMY")).toEqual({
      minQuality: 8,
      maxQuality: 10,
    });
    expect(selectionBounds({ tier: "FREE" }, "STANDARD")).toEqual({
      minQuality: 5,
      maxQuality: 7,
    });
  });

  it("holds FREE to the cheapest class the media type has (video has standard only)", () => {
    const sim = new StaticModelCatalog(BUILTIN_MODELS);
    expect(selectModel(sim, { mediaType: "VIDEO", tier: "FREE" })?.name).toBe("sim-video");
    expect(() =>
      selectModel(sim, { mediaType: "VIDEO", tier: "FREE", contentType: "CLIENT" }),
    ).toThrow(BadInputError);
    // No premium video exists: a paying CLIENT request gets the best there is.
    expect(selectModel(sim, { mediaType: "VIDEO", tier: "PRO", contentType: "CLIENT" })?.name).toBe(
      "sim-video",
    );
  });

  it("skips deprecated models, also when classing the cheapest class", () => {
    const c = new StaticModelCatalog([
      { ...model("e4", 4, 0.002), deprecated: true },
      model("s5", 5, 0.01),
      model("p8", 8, 0.04),
    ]);
    expect(selectModel(c, { mediaType: "IMAGE", quality: 1, tier: "FREE" })?.name).toBe("s5");
  });

  it("compares models at their preferred provider's price", () => {
    const c = new StaticModelCatalog([
      model("s5", 5, 0.01),
      {
        ...model("s6", 6, 0.02),
        routes: [{ provider: "fal", model: "x", pricing: { baseUsd: 0.005 } }],
      },
    ]);
    expect(selectModel(c, { mediaType: "IMAGE", quality: 5 })?.name).toBe("s6");
  });

  it("answers nothing for a media type without models", () => {
    expect(selectModel(boundaries, { mediaType: "AUDIO" })).toBeUndefined();
  });
});

describe("named models and the tier", () => {
  const sim = new StaticModelCatalog(BUILTIN_MODELS);
  const base = { mediaType: "IMAGE" as const, prompt: "a lighthouse" };

  function fieldOf(fn: () => unknown): unknown {
    try {
      fn();
    } catch (err) {
      return (err as BadInputError).extensions?.field;
    }
    return null;
  }

  it("lets FREE name a model of its class", () => {
    const req = validateGenerateRequest(sim, { ...base, model: "sim-image-fast" }, "u1", "FREE");
    expect(req.model.name).toBe("sim-image-fast");
  });

  it("refuses FREE naming a model above its class, on model", () => {
    expect(
      fieldOf(() =>
        validateGenerateRequest(sim, { ...base, model: "sim-image-pro" }, "u1", "FREE"),
      ),
    ).toBe("model");
  });

  it("refuses FREE a fallback model above its class, on fallbackModels[i]", () => {
    expect(
      fieldOf(() =>
        validateGenerateRequest(
          sim,
          { ...base, model: "sim-image-fast", fallbackModels: ["sim-image-standard"] },
          "u1",
          "FREE",
        ),
      ),
    ).toBe("fallbackModels[0]");
  });

  it("takes a named model as asked for paying tiers, whatever the content type", () => {
    for (const tier of ["PRO", "ENTERPRISE", undefined] as const) {
      const req = validateGenerateRequest(
        sim,
        { ...base, model: "sim-image-fast", contentType: "PRINT" },
        "u1",
        tier,
      );
      expect(req.model.name).toBe("sim-image-fast");
    }
  });

  it("defaults to PRO when the tier is not known", () => {
    const req = validateGenerateRequest(sim, { ...base, quality: 9 }, "u1");
    expect(req.model.name).toBe("sim-image-pro");
  });

  it("selects by content type and tier when no model is named", () => {
    expect(
      validateGenerateRequest(sim, { ...base, contentType: "CLIENT" }, "u1", "PRO").model.name,
    ).toBe("sim-image-pro");
    expect(
      validateGenerateRequest(sim, { ...base, contentType: "SOCIAL" }, "u1", "PRO").model.name,
    ).toBe("sim-image-fast");
    expect(
      fieldOf(() => validateGenerateRequest(sim, { ...base, contentType: "PRINT" }, "u1", "FREE")),
    ).toBe("contentType");
  });
});

describe("estimates and the provider's price", () => {
  const flux = new StaticModelCatalog(PROVIDER_MODELS).get("flux-dev")!;
  const overridden: ModelDefinition = {
    ...flux,
    routes: [
      flux.routes[0]!,
      { ...flux.routes[1]!, pricing: { baseUsd: 0.02 } },
      { ...flux.routes[2]!, pricing: { baseUsd: 0.012, batchDiscount: 0.4 } },
    ],
  };
  const size = { width: 1024, height: 1024 };

  it("prices at the preferred provider unless told which", () => {
    const e = estimateCost(overridden, { ...size, priority: "STANDARD" });
    expect(e.provider).toBe("replicate");
    expect(e.breakdown.baseCostUsd).toBe(0.025);
  });

  it("uses a provider's own price where it has one", () => {
    const e = estimateCost(overridden, { ...size, priority: "STANDARD", provider: "fal" });
    expect(e.breakdown.baseCostUsd).toBe(0.02);
    expect(e.estimatedCostUsd).toBeCloseTo(0.02 * 1.048576, 6);
  });

  it("falls back to the model's price for a provider it no longer lists", () => {
    const e = estimateCost(overridden, { ...size, priority: "STANDARD", provider: "openai" });
    expect(e.breakdown.baseCostUsd).toBe(0.025);
  });

  it("takes the batch discount from the model or provider: none without a batch API", () => {
    expect(estimateCost(flux, { priority: "BATCH" }).breakdown.batchDiscount).toBe(0);
    const gpt = new StaticModelCatalog(PROVIDER_MODELS).get("gpt-image-1.5")!;
    expect(estimateCost(gpt, { priority: "BATCH" }).breakdown.batchDiscount).toBe(0.5);
    const ws = estimateCost(overridden, { priority: "BATCH", provider: "wavespeed" });
    expect(ws.breakdown.batchDiscount).toBe(0.4);
    expect(ws.estimatedCostUsd).toBeCloseTo(0.012 * 0.6, 6);
  });

  it("gives no discount outside BATCH priority", () => {
    for (const priority of ["INTERACTIVE", "STANDARD"] as const) {
      const gpt = new StaticModelCatalog(PROVIDER_MODELS).get("gpt-image-1.5")!;
      expect(estimateCost(gpt, { priority }).breakdown.batchDiscount).toBe(0);
    }
  });
});
