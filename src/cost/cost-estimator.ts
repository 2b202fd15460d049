import type { Priority } from "../entities";
import { routePricing, type ModelDefinition } from "./model-catalog";

export interface CostBreakdown {
  baseCostUsd: number;
  resolutionMultiplier: number;
  durationMultiplier: number;
  batchDiscount: number;
}

export interface CostEstimate {
  estimatedCostUsd: number;
  breakdown: CostBreakdown;
  /** The provider whose price this is; null when the model has no route left to price. */
  provider: string | null;
}

/** What a provider's batch API takes off its synchronous price (OpenAI Batch, for one). */
export const BATCH_DISCOUNT = 0.5;

/**
 * The price of one generation on a model. Before it runs, the model's preferred provider
 * prices it (the first route, which the fallback chain tries first); once an attempt has
 * succeeded, the provider that served it does, so a provider-specific price applies.
 */
export function estimateCost(
  model: ModelDefinition,
  params: {
    width?: number;
    height?: number;
    durationSeconds?: number;
    priority: Priority;
    /** The provider that serves (or served) it; unset: the preferred one. */
    provider?: string;
  },
): CostEstimate {
  const provider = params.provider ?? model.routes[0]?.provider;
  const pricing = routePricing(model, provider);
  const megapixels = ((params.width ?? 0) * (params.height ?? 0)) / 1_000_000;
  const resolutionMultiplier =
    pricing.perMegapixel && megapixels > 0 ? megapixels / (pricing.referenceMegapixels ?? 1) : 1;
  const durationMultiplier = pricing.perSecond ? (params.durationSeconds ?? 1) : 1;
  const batchDiscount = params.priority === "BATCH" ? (pricing.batchDiscount ?? 0) : 0;
  const raw = pricing.baseUsd * resolutionMultiplier * durationMultiplier * (1 - batchDiscount);
  return {
    estimatedCostUsd: roundUsd(raw),
    breakdown: {
      baseCostUsd: pricing.baseUsd,
      resolutionMultiplier: round(resolutionMultiplier, 4),
      durationMultiplier: round(durationMultiplier, 4),
      batchDiscount,
    },
    provider: provider ?? null,
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

/**
 * What to hold against a budget for a request: the dearest place its fallback chain could
 * end up (a fallback model or provider may cost more than the first choice), at the full
 * price (a BATCH request may run as a plain one). The charge at completion is then never
 * more than what was held, so spending can never pass the limit.
 */
export function worstCaseCost(
  chain: ReadonlyArray<{ model: ModelDefinition; route: { provider: string } }>,
  params: { width?: number; height?: number; durationSeconds?: number },
): number {
  let worst = 0;
  for (const { model, route } of chain) {
    const { estimatedCostUsd } = estimateCost(model, {
      ...params,
      priority: "STANDARD",
      provider: route.provider,
    });
    worst = Math.max(worst, estimatedCostUsd);
  }
  return worst;
}
