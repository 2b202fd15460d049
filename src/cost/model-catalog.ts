import type { MediaType } from "../entities";

export interface ModelPricing {
  /** Price of one output at the reference size (and for one second, when `perSecond`). */
  baseUsd: number;
  /** Scale the price by output megapixels relative to `referenceMegapixels`. */
  perMegapixel?: boolean;
  referenceMegapixels?: number;
  /** Multiply the price by the output duration in seconds. */
  perSecond?: boolean;
  /**
   * Fraction taken off for BATCH priority: 0.5 where the provider has a batch API at half
   * price, 0 (the default) where it has none.
   */
  batchDiscount?: number;
}

/** What one provider charges differently from the model's list price. */
export type RoutePricing = Pick<ModelPricing, "baseUsd" | "batchDiscount">;

export interface ModelLimits {
  minSize: number;
  maxSize: number;
  defaultWidth: number;
  defaultHeight: number;
  minDurationSeconds?: number;
  maxDurationSeconds?: number;
  defaultDurationSeconds?: number;
}

/** One provider that serves a model, under that provider's own model id. */
export interface ProviderRoute {
  provider: string;
  model: string;
  /** This provider's own price where it differs from the model's (the rest is inherited). */
  pricing?: Partial<RoutePricing>;
}

export interface ModelDefinition {
  name: string;
  mediaType: MediaType;
  quality: number;
  pricing: ModelPricing;
  limits: ModelLimits;
  /** Providers in preference order. */
  routes: ProviderRoute[];
  /** Typical provider time, used until enough observations exist. */
  typicalSeconds: number;
  /** An attempt with no result after this long fails with PROVIDER_TIMEOUT. */
  timeoutSeconds: number;
  deprecated?: boolean;
  /** Models to fall back to, in order, when the request names none. */
  alternates?: string[];
  /** Retired names that now mean this model, so old requests keep working. */
  aliases?: string[];
}

/**
 * The catalog as the domain reads it: synchronous, because it is read on every request.
 * `StaticModelCatalog` is a fixed list (tests, tools); `PostgresModelCatalog` holds the
 * operators' catalog in memory and reloads it when they edit it.
 */
export interface ModelCatalog {
  get(name: string): ModelDefinition | undefined;
  list(mediaType?: MediaType): ModelDefinition[];
}

/** Every simulated provider serves every sim model; the first is preferred. */
/**
 * The price of a model at one of its providers: the route's own price where it has one,
 * the model's otherwise. Without a provider (or one the model no longer lists), the model's.
 */
export function routePricing(model: ModelDefinition, provider?: string): ModelPricing {
  const route = provider ? model.routes.find((r) => r.provider === provider) : undefined;
  return { ...model.pricing, ...stripUndefined(route?.pricing ?? {}) };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const simRoutes = (model: string): ProviderRoute[] =>
  ["simulated", "simulated-2", "simulated-3"].map((provider) => ({ provider, model }));

const IMAGE_LIMITS: ModelLimits = {
  minSize: 64,
  maxSize: 2048,
  defaultWidth: 1024,
  defaultHeight: 1024,
};

/**
 * The simulated provider's models: realistic prices and limits, no real provider needed.
 * The simulated provider behaves as if it had a half-price batch API.
 */
export const BUILTIN_MODELS: ModelDefinition[] = [
  {
    name: "sim-image-fast",
    mediaType: "IMAGE",
    quality: 4,
    pricing: { baseUsd: 0.003, batchDiscount: 0.5 },
    limits: { ...IMAGE_LIMITS, maxSize: 1536, defaultWidth: 512, defaultHeight: 512 },
    routes: simRoutes("sim/image"),
    typicalSeconds: 2,
    timeoutSeconds: 120,
  },
  {
    name: "sim-image-standard",
    mediaType: "IMAGE",
    quality: 7,
    pricing: { baseUsd: 0.025, perMegapixel: true, referenceMegapixels: 1, batchDiscount: 0.5 },
    limits: IMAGE_LIMITS,
    routes: simRoutes("sim/image"),
    typicalSeconds: 4,
    timeoutSeconds: 120,
  },
  {
    name: "sim-image-pro",
    mediaType: "IMAGE",
    quality: 9,
    pricing: { baseUsd: 0.055, perMegapixel: true, referenceMegapixels: 1, batchDiscount: 0.5 },
    limits: IMAGE_LIMITS,
    routes: simRoutes("sim/image"),
    typicalSeconds: 8,
    timeoutSeconds: 180,
  },
  {
    name: "sim-video",
    mediaType: "VIDEO",
    quality: 6,
    pricing: { baseUsd: 0.05, perSecond: true, batchDiscount: 0.5 },
    limits: {
      minSize: 64,
      maxSize: 1024,
      defaultWidth: 512,
      defaultHeight: 512,
      minDurationSeconds: 1,
      maxDurationSeconds: 10,
      defaultDurationSeconds: 2,
    },
    routes: simRoutes("sim/video"),
    typicalSeconds: 20,
    timeoutSeconds: 600,
  },
  {
    name: "sim-audio",
    mediaType: "AUDIO",
    quality: 6,
    pricing: { baseUsd: 0.002, perSecond: true, batchDiscount: 0.5 },
    limits: {
      minSize: 0,
      maxSize: 0,
      defaultWidth: 0,
      defaultHeight: 0,
      minDurationSeconds: 1,
      maxDurationSeconds: 60,
      defaultDurationSeconds: 5,
    },
    routes: simRoutes("sim/audio"),
    typicalSeconds: 5,
    timeoutSeconds: 120,
  },
];

/**
 * Models served by real providers; each appears only where one of its providers is
 * configured. Prices are the providers' list prices at the reference size. Replicate, fal
 * and WaveSpeed have no batch API, so the flux models have no batch discount; OpenAI's Batch
 * API is half price.
 */
export const PROVIDER_MODELS: ModelDefinition[] = [
  {
    name: "flux-schnell",
    mediaType: "IMAGE",
    quality: 5,
    pricing: { baseUsd: 0.003 },
    limits: IMAGE_LIMITS,
    routes: [
      { provider: "replicate", model: "black-forest-labs/flux-schnell" },
      { provider: "fal", model: "fal-ai/flux/schnell" },
      { provider: "wavespeed", model: "wavespeed-ai/flux-schnell" },
    ],
    alternates: ["flux-dev"],
    typicalSeconds: 3,
    timeoutSeconds: 120,
  },
  {
    name: "flux-dev",
    mediaType: "IMAGE",
    quality: 7,
    pricing: { baseUsd: 0.025, perMegapixel: true, referenceMegapixels: 1 },
    limits: IMAGE_LIMITS,
    routes: [
      { provider: "replicate", model: "black-forest-labs/flux-dev" },
      { provider: "fal", model: "fal-ai/flux/dev" },
      { provider: "wavespeed", model: "wavespeed-ai/flux-dev" },
    ],
    alternates: ["flux-schnell"],
    typicalSeconds: 10,
    timeoutSeconds: 300,
  },
  {
    // gpt-image-1 and the DALL·E models are retired; medium quality at 1024×1024.
    name: "gpt-image-1.5",
    mediaType: "IMAGE",
    quality: 9,
    pricing: { baseUsd: 0.034, batchDiscount: 0.5 },
    limits: { minSize: 1024, maxSize: 1536, defaultWidth: 1024, defaultHeight: 1024 },
    routes: [{ provider: "openai", model: "gpt-image-1.5" }],
    aliases: ["gpt-image-1", "dall-e-3"],
    alternates: ["flux-dev"],
    typicalSeconds: 15,
    timeoutSeconds: 180,
  },
];

export class StaticModelCatalog implements ModelCatalog {
  private readonly byName: Map<string, ModelDefinition>;
  private readonly byAlias: Map<string, ModelDefinition>;

  constructor(private readonly models: ModelDefinition[] = BUILTIN_MODELS) {
    this.byName = new Map(models.map((m) => [m.name, m]));
    this.byAlias = new Map(models.flatMap((m) => (m.aliases ?? []).map((a) => [a, m] as const)));
  }

  /** The model by name or by one of its aliases. */
  get(name: string): ModelDefinition | undefined {
    return this.byName.get(name) ?? this.byAlias.get(name);
  }

  list(mediaType?: MediaType): ModelDefinition[] {
    return this.models.filter((m) => !mediaType || m.mediaType === mediaType);
  }

  /** The models at least one of whose providers is configured, with only those routes. */
  static available(
    models: ModelDefinition[],
    configured: (provider: string) => boolean,
  ): StaticModelCatalog {
    return new StaticModelCatalog(
      models
        .map((m) => ({ ...m, routes: m.routes.filter((r) => configured(r.provider)) }))
        .filter((m) => m.routes.length > 0),
    );
  }
}
