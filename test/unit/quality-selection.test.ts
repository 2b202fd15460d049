import { StaticModelCatalog, type ModelDefinition } from "../../src/cost/model-catalog";
import { costPerAcceptedOutput, selectModel } from "../../src/cost/model-selector";
import { createLogger } from "../../src/common/logger";
import { PassRateTracker, type PassCount } from "../../src/quality";

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

// Two standard-class models: "cheap" costs less per call, "steady" less per accepted output
// once cheap's outputs are rejected often enough.
const catalog = new StaticModelCatalog([model("cheap", 6, 0.01), model("steady", 6, 0.015)]);
const rates = (r: Record<string, number | undefined>) => ({ rate: (m: string) => r[m] });

describe("model selection by cost per accepted output", () => {
  it("is price over pass rate, and price alone without a rate", () => {
    expect(costPerAcceptedOutput(0.01, 0.5)).toBe(0.02);
    expect(costPerAcceptedOutput(0.01, undefined)).toBe(0.01);
    expect(costPerAcceptedOutput(0.01, 0)).toBe(1); // floor of 1%: ranks last, stays finite
  });

  it("picks the cheapest per call while pass rates are unknown or equal", () => {
    expect(selectModel(catalog, { mediaType: "IMAGE" })?.name).toBe("cheap");
    expect(selectModel(catalog, { mediaType: "IMAGE" }, rates({}))?.name).toBe("cheap");
    expect(
      selectModel(catalog, { mediaType: "IMAGE" }, rates({ cheap: 0.9, steady: 0.9 }))?.name,
    ).toBe("cheap");
  });

  it("picks the model that is cheaper per accepted output when the cheap one is often rejected", () => {
    // cheap: 0.01 / 0.6 ≈ 0.0167 > steady: 0.015 / 0.98 ≈ 0.0153
    expect(
      selectModel(catalog, { mediaType: "IMAGE" }, rates({ cheap: 0.6, steady: 0.98 }))?.name,
    ).toBe("steady");
    // cheap: 0.01 / 0.7 ≈ 0.0143 < steady without a rate: 0.015
    expect(selectModel(catalog, { mediaType: "IMAGE" }, rates({ cheap: 0.7 }))?.name).toBe("cheap");
  });
});

describe("recent pass rates", () => {
  const logger = createLogger("silent");

  it("are known only with enough judged attempts, and the last ones are kept when a read fails", async () => {
    let answer: Map<string, PassCount> | Error = new Map([
      ["cheap", { judged: 20, passed: 12 }],
      ["steady", { judged: 19, passed: 19 }],
    ]);
    const tracker = new PassRateTracker(
      {
        recent: async (hours: number) => {
          expect(hours).toBe(168);
          if (answer instanceof Error) throw answer;
          return answer;
        },
      },
      { windowHours: 168, minObservations: 20 },
      logger,
    );
    expect(tracker.rate("cheap")).toBeUndefined();
    await tracker.refresh();
    expect(tracker.rate("cheap")).toBe(0.6);
    expect(tracker.rate("steady")).toBeUndefined(); // 19 < 20
    expect(tracker.rate("unknown")).toBeUndefined();
    answer = new Error("database gone");
    await tracker.refresh();
    expect(tracker.rate("cheap")).toBe(0.6);
  });
});
