import type { MediaType } from "../entities";

export interface ModelPricing {
  /** Price of one output at the reference size (and for one second, when `perSecond`). */
  baseUsd: number;
  /** Scale the price by output megapixels relative to `referenceMegapixels`. */
  perMegapixel?: boolean;
  referenceMegapixels?: number;
  /** Multiply the price by the output duration in seconds. */
  perSecond?: boolean;
}

export interface ModelLimits {
  minSize: number;
  maxSize: number;
  defaultWidth: number;
  defaultHeight: number;
  minDurationSeconds?: number;
  maxDurationSeconds?: number;
  defaultDurationSeconds?: number;
}

export interface ModelDefinition {
  name: string;
  mediaType: MediaType;
  quality: number;
  pricing: ModelPricing;
  limits: ModelLimits;
  /** Provider names in preference order. */
  providers: string[];
  /** Typical provider time, used until enough observations exist. */
  typicalSeconds: number;
  deprecated?: boolean;
}

/**
 * The catalog as the domain reads it. A fixed list backs it for now; a Postgres-backed
 * catalog editable by operators implements the same interface.
 */
export interface ModelCatalog {
  get(name: string): ModelDefinition | undefined;
  list(mediaType?: MediaType): ModelDefinition[];
}

const IMAGE_LIMITS: ModelLimits = {
  minSize: 64,
  maxSize: 2048,
  defaultWidth: 1024,
  defaultHeight: 1024,
};

/** The simulated provider's models: realistic prices and limits, no real provider needed. */
export const BUILTIN_MODELS: ModelDefinition[] = [
  {
    name: "sim-image-fast",
    mediaType: "IMAGE",
    quality: 4,
    pricing: { baseUsd: 0.003 },
    limits: { ...IMAGE_LIMITS, maxSize: 1536, defaultWidth: 512, defaultHeight: 512 },
    providers: ["simulated"],
    typicalSeconds: 2,
  },
  {
    name: "sim-image-standard",
    mediaType: "IMAGE",
    quality: 7,
    pricing: { baseUsd: 0.025, perMegapixel: true, referenceMegapixels: 1 },
    limits: IMAGE_LIMITS,
    providers: ["simulated"],
    typicalSeconds: 4,
  },
  {
    name: "sim-image-pro",
    mediaType: "IMAGE",
    quality: 9,
    pricing: { baseUsd: 0.055, perMegapixel: true, referenceMegapixels: 1 },
    limits: IMAGE_LIMITS,
    providers: ["simulated"],
    typicalSeconds: 8,
  },
  {
    name: "sim-video",
    mediaType: "VIDEO",
    quality: 6,
    pricing: { baseUsd: 0.05, perSecond: true },
    limits: {
      minSize: 64,
      maxSize: 1024,
      defaultWidth: 512,
      defaultHeight: 512,
      minDurationSeconds: 1,
      maxDurationSeconds: 10,
      defaultDurationSeconds: 2,
    },
    providers: ["simulated"],
    typicalSeconds: 20,
  },
  {
    name: "sim-audio",
    mediaType: "AUDIO",
    quality: 6,
    pricing: { baseUsd: 0.002, perSecond: true },
    limits: {
      minSize: 0,
      maxSize: 0,
      defaultWidth: 0,
      defaultHeight: 0,
      minDurationSeconds: 1,
      maxDurationSeconds: 60,
      defaultDurationSeconds: 5,
    },
    providers: ["simulated"],
    typicalSeconds: 5,
  },
];

export class StaticModelCatalog implements ModelCatalog {
  private readonly byName: Map<string, ModelDefinition>;

  constructor(private readonly models: ModelDefinition[] = BUILTIN_MODELS) {
    this.byName = new Map(models.map((m) => [m.name, m]));
  }

  get(name: string): ModelDefinition | undefined {
    return this.byName.get(name);
  }

  list(mediaType?: MediaType): ModelDefinition[] {
    return this.models.filter((m) => !mediaType || m.mediaType === mediaType);
  }
}
