import type { Priority } from "../entities";
import type { ModelDefinition } from "./model-catalog";

export interface CostBreakdown {
  baseCostUsd: number;
  resolutionMultiplier: number;
  durationMultiplier: number;
  batchDiscount: number;
}

export interface CostEstimate {
  estimatedCostUsd: number;
  breakdown: CostBreakdown;
}

/** Providers' batch APIs cost half of their synchronous price (OpenAI Batch, for one). */
export const BATCH_DISCOUNT = 0.5;

export function estimateCost(
  model: ModelDefinition,
  params: { width?: number; height?: number; durationSeconds?: number; priority: Priority },
): CostEstimate {
  const { pricing } = model;
  const megapixels = ((params.width ?? 0) * (params.height ?? 0)) / 1_000_000;
  const resolutionMultiplier =
    pricing.perMegapixel && megapixels > 0 ? megapixels / (pricing.referenceMegapixels ?? 1) : 1;
  const durationMultiplier = pricing.perSecond ? (params.durationSeconds ?? 1) : 1;
  const batchDiscount = params.priority === "BATCH" ? BATCH_DISCOUNT : 0;
  const raw = pricing.baseUsd * resolutionMultiplier * durationMultiplier * (1 - batchDiscount);
  return {
    estimatedCostUsd: roundUsd(raw),
    breakdown: {
      baseCostUsd: pricing.baseUsd,
      resolutionMultiplier: round(resolutionMultiplier, 4),
      durationMultiplier: round(durationMultiplier, 4),
      batchDiscount,
    },
  };
}

/** Money is kept to micro-dollars, like the `numeric(14, 6)` columns. */
export function roundUsd(value: number): number {
  return round(value, 6);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
