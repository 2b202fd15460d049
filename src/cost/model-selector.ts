import type { MediaType } from "../entities";
import type { ModelCatalog, ModelDefinition } from "./model-catalog";

/** Quality asked for when the request names none. */
export const DEFAULT_QUALITY = 5;

/**
 * The cheapest non-deprecated model of the media type whose quality meets the request;
 * when none reaches it, the best available one.
 */
export function selectModel(
  catalog: ModelCatalog,
  mediaType: MediaType,
  quality = DEFAULT_QUALITY,
): ModelDefinition | undefined {
  const candidates = catalog.list(mediaType).filter((m) => !m.deprecated);
  const meeting = candidates
    .filter((m) => m.quality >= quality)
    .sort((a, b) => a.pricing.baseUsd - b.pricing.baseUsd || b.quality - a.quality);
  if (meeting[0]) return meeting[0];
  return candidates.sort((a, b) => b.quality - a.quality)[0];
}
