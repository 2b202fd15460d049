import type { ModelCatalog, ModelDefinition, ProviderRoute } from "../cost/model-catalog";

/** One place a generation can be tried: a model at one of its providers. */
export interface Candidate {
  model: ModelDefinition;
  route: ProviderRoute;
}

/**
 * The fallback chain of a generation, as policy: the requested model at each of its providers
 * in preference order, then the fallback models the request names (or, when it names none,
 * the catalog's alternates), each at each of their providers. Providers not configured here
 * are left out; so are models the catalog does not know.
 */
export function fallbackChain(
  catalog: ModelCatalog,
  requested: string,
  fallbackModels: string[] | undefined,
  configured: (provider: string) => boolean,
  /** The tier's ceiling: alternates above it are not tried (named fallbacks were checked). */
  maxQuality = Infinity,
): Candidate[] {
  const first = catalog.get(requested);
  if (!first) return [];
  const names = [
    first.name,
    ...(fallbackModels?.length ? fallbackModels : (first.alternates ?? [])),
  ];
  const seen = new Set<string>();
  const chain: Candidate[] = [];
  for (const name of names) {
    const model = catalog.get(name);
    if (!model || model.mediaType !== first.mediaType || seen.has(model.name)) continue;
    if (model !== first && !fallbackModels?.length && model.quality > maxQuality) continue;
    seen.add(model.name);
    for (const route of model.routes) if (configured(route.provider)) chain.push({ model, route });
  }
  return chain;
}
