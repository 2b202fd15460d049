import { BadInputError } from "../common/errors";
import type { MediaType, Tier } from "../entities";
import { routePricing, type ModelCatalog, type ModelDefinition } from "./model-catalog";

export type ContentType = "GENERAL" | "SOCIAL" | "CLIENT" | "PRINT";
export const CONTENT_TYPES: readonly ContentType[] = ["GENERAL", "SOCIAL", "CLIENT", "PRINT"];
export const TIERS: readonly Tier[] = ["FREE", "PRO", "ENTERPRISE"];

/** Quality asked for when the request names none. */
export const DEFAULT_QUALITY = 5;

/** Tier assumed when the end user's is not known. */
export const DEFAULT_TIER: Tier = "PRO";

/**
 * Quality classes, cheapest first. Models are classed by their catalog quality (1..10); the
 * tier and content type policy speaks in classes, the request in qualities.
 */
export const QUALITY_CLASSES = [
  { name: "ECONOMY", min: 1, max: 4 },
  { name: "STANDARD", min: 5, max: 7 },
  { name: "PREMIUM", min: 8, max: 10 },
] as const;

export type QualityClass = (typeof QUALITY_CLASSES)[number]["name"];

/** Index into QUALITY_CLASSES: 0 economy, 1 standard, 2 premium. */
function classIndex(quality: number): number {
  return QUALITY_CLASSES.findIndex((c) => quality >= c.min && quality <= c.max);
}

export function qualityClass(quality: number): QualityClass {
  return QUALITY_CLASSES[Math.max(0, classIndex(quality))]!.name;
}

export interface SelectionRequest {
  mediaType: MediaType;
  /** 1..10; DEFAULT_QUALITY when unset. */
  quality?: number;
  /** GENERAL when unset. */
  contentType?: ContentType;
  /** The end user's tier; DEFAULT_TIER when unset. */
  tier?: Tier;
}

/** The range of catalog qualities a request may be served from, before any model is looked at. */
export interface SelectionBounds {
  /** The quality a model must reach to be preferred. */
  minQuality: number;
  /** No model above this quality may serve the request (the tier's ceiling). */
  maxQuality: number;
}

/**
 * The selection policy, as a table (q = the quality asked for, default 5):
 *
 * | content type      | quality floor                                          |
 * | ----------------- | ------------------------------------------------------ |
 * | GENERAL (default) | q                                                      |
 * | SOCIAL            | the bottom of the class below q's (economy: q itself)  |
 * | CLIENT, PRINT     | max(q, 8): the premium class                           |
 *
 * | tier              | quality ceiling                                        |
 * | ----------------- | ------------------------------------------------------ |
 * | FREE              | the top of the cheapest class the media type has       |
 * | PRO, ENTERPRISE   | none (10)                                              |
 *
 * Among non-deprecated models of the media type under the ceiling, the cheapest reaching the
 * floor wins (a tie goes to the higher quality); when none reaches it, the best one there
 * is. "Cheapest" is per accepted output: a model whose recent quality pass rate is known
 * (`passRates`) costs its price divided by that rate, since each rejected output is paid for
 * and tried again; one without enough observations costs its price. A floor above the ceiling is a request the tier does not cover: FREE with CLIENT or
 * PRINT is refused (`contentType`) rather than served below what the content needs; FREE
 * asking a higher quality in GENERAL or SOCIAL is served at its ceiling.
 */
export function selectionBounds(
  req: Omit<SelectionRequest, "mediaType">,
  /** The cheapest class among the media type's models (what FREE is held to). */
  cheapestClass: QualityClass,
): SelectionBounds & { refused?: string } {
  const q = req.quality ?? DEFAULT_QUALITY;
  const cls = classIndex(q);
  let minQuality: number;
  switch (req.contentType ?? "GENERAL") {
    case "GENERAL":
      minQuality = q;
      break;
    case "SOCIAL":
      minQuality = cls > 0 ? QUALITY_CLASSES[cls - 1]!.min : q;
      break;
    case "CLIENT":
    case "PRINT":
      minQuality = Math.max(q, QUALITY_CLASSES[2].min);
      break;
  }
  const tier = req.tier ?? DEFAULT_TIER;
  const maxQuality =
    tier === "FREE" ? QUALITY_CLASSES.find((c) => c.name === cheapestClass)!.max : 10;
  const needsPremium = req.contentType === "CLIENT" || req.contentType === "PRINT";
  if (needsPremium && maxQuality < QUALITY_CLASSES[2].min) {
    return {
      minQuality,
      maxQuality,
      refused: `${req.contentType} content needs the PREMIUM class, which the ${tier} tier does not include`,
    };
  }
  return { minQuality, maxQuality };
}

/** The highest quality a tier may use for a media type (FREE: its cheapest class). */
export function tierCeiling(catalog: ModelCatalog, mediaType: MediaType, tier?: Tier): number {
  return selectionBounds({ tier }, cheapestClassOf(selectable(catalog, mediaType))).maxQuality;
}

/**
 * The model for a request that names none, by the policy of `selectionBounds`. Undefined
 * when the catalog has no model of the media type; throws `BadInputError` on `contentType`
 * when the tier does not cover what the content type requires.
 */
export function selectModel(
  catalog: ModelCatalog,
  req: SelectionRequest,
  passRates?: { rate(model: string): number | undefined },
): ModelDefinition | undefined {
  const candidates = selectable(catalog, req.mediaType);
  if (candidates.length === 0) return undefined;
  const bounds = selectionBounds(req, cheapestClassOf(candidates));
  if (bounds.refused) throw new BadInputError("contentType", bounds.refused);
  const allowed = candidates.filter((m) => m.quality <= bounds.maxQuality);
  const meeting = allowed
    .filter((m) => m.quality >= bounds.minQuality)
    .sort((a, b) => perAccepted(a) - perAccepted(b) || b.quality - a.quality);
  if (meeting[0]) return meeting[0];
  return allowed.sort((a, b) => b.quality - a.quality || perAccepted(a) - perAccepted(b))[0];

  function perAccepted(m: ModelDefinition): number {
    return costPerAcceptedOutput(price(m), passRates?.rate(m.name));
  }
}

/**
 * Price over pass rate: what one accepted output costs when rejected ones are paid and
 * retried. A rate under 1% counts as 1%, so a model that never passes ranks last, not as
 * infinitely (and equally) expensive.
 */
export function costPerAcceptedOutput(price: number, passRate: number | undefined): number {
  return passRate === undefined ? price : price / Math.max(0.01, passRate);
}

function selectable(catalog: ModelCatalog, mediaType: MediaType): ModelDefinition[] {
  return catalog.list(mediaType).filter((m) => !m.deprecated);
}

function cheapestClassOf(models: ModelDefinition[]): QualityClass {
  const lowest = Math.min(...models.map((m) => m.quality));
  return qualityClass(Number.isFinite(lowest) ? lowest : 1);
}

/** Compared at the preferred provider's price, the one an estimate quotes. */
function price(m: ModelDefinition): number {
  return routePricing(m, m.routes[0]?.provider).baseUsd;
}
