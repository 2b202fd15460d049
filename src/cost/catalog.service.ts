import { requireRole, requireViewer, type Viewer } from "../auth/viewer";
import { BadInputError, ForbiddenError } from "../common/errors";
import type { MediaType } from "../entities";
import { PROVIDER_NAMES } from "../providers/provider.factory";
import type { CatalogRepository } from "./catalog.repository";
import {
  routePricing,
  type ModelDefinition,
  type ModelLimits,
  type ProviderRoute,
} from "./model-catalog";
import { qualityClass, type QualityClass } from "./model-selector";
import type { PostgresModelCatalog } from "./postgres-model-catalog";

/** A model as an operator writes it: the whole definition, which replaces the stored one. */
export interface ModelInputData {
  name: string;
  mediaType: string;
  quality: number;
  pricing: {
    baseCostUsd: number;
    perMegapixel?: boolean | null;
    referenceMegapixels?: number | null;
    perSecond?: boolean | null;
    batchDiscount?: number | null;
  };
  limits: {
    minSize?: number | null;
    maxSize?: number | null;
    defaultWidth?: number | null;
    defaultHeight?: number | null;
    minDurationSeconds?: number | null;
    maxDurationSeconds?: number | null;
    defaultDurationSeconds?: number | null;
  };
  routes: Array<{
    provider: string;
    model: string;
    baseCostUsd?: number | null;
    batchDiscount?: number | null;
  }>;
  alternates?: string[] | null;
  aliases?: string[] | null;
  typicalSeconds: number;
  timeoutSeconds: number;
  deprecated?: boolean | null;
}

/** A model as the API shows it: the stored definition with what this deployment makes of it. */
export interface ModelDescription {
  definition: ModelDefinition;
  qualityClass: QualityClass;
  /** At least one of its providers is configured here: it can be named and chosen. */
  available: boolean;
  /** Its configured providers, in preference order. */
  providers: string[];
  routes: Array<{
    provider: string;
    model: string;
    baseCostUsd: number;
    batchDiscount: number;
    /** The route has a price of its own. */
    priceOverride: boolean;
    configured: boolean;
  }>;
}

const MEDIA_TYPES: readonly MediaType[] = ["IMAGE", "VIDEO", "AUDIO"];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const MAX_PRICE_USD = 1000;
const MAX_SIZE = 8192;
const MAX_DURATION_SECONDS = 3600;
const MAX_SECONDS = 86_400;
const MAX_ROUTES = 10;
const MAX_ALTERNATES = 5;
const MAX_ALIASES = 10;

/**
 * Operating the model catalog. Reads answer any credential; edits are ADMIN's. A model is
 * never deleted or renamed and its media type never changes, because stored generations
 * name it: operators deprecate instead (it is then never chosen, but still served by name).
 */
export class CatalogService {
  constructor(
    private readonly repo: CatalogRepository,
    private readonly catalog: PostgresModelCatalog,
  ) {}

  /** The usable models; with `includeUnavailable` (ADMIN), every stored one. */
  list(
    viewer: Viewer | null,
    mediaType?: MediaType | null,
    includeUnavailable = false,
  ): ModelDescription[] {
    const v = requireViewer(viewer);
    if (includeUnavailable && v.role !== "ADMIN") {
      throw new ForbiddenError("Only ADMIN may list models this deployment cannot serve");
    }
    return this.catalog
      .stored()
      .filter((m) => !mediaType || m.mediaType === mediaType)
      .map((m) => this.describe(m))
      .filter((d) => includeUnavailable || d.available);
  }

  /** ADMIN: creates the model or replaces its whole definition. */
  async upsert(viewer: Viewer | null, input: ModelInputData): Promise<ModelDescription> {
    requireRole(viewer, "ADMIN");
    const model = validateModelInput(input);
    const saved = await this.repo.edit((stored) => {
      checkAgainstCatalog(model, stored);
      return model;
    });
    await this.catalog.changed(saved.name);
    return this.describe(saved);
  }

  /** ADMIN: a deprecated model is never chosen, but requests naming it are still served. */
  async deprecate(
    viewer: Viewer | null,
    name: string,
    deprecated: boolean,
  ): Promise<ModelDescription> {
    requireRole(viewer, "ADMIN");
    const saved = await this.repo.edit((stored) => {
      const model = stored.find((m) => m.name === name);
      if (!model) throw new BadInputError("name", `unknown model "${name}"`);
      const { deprecated: _, ...rest } = model;
      return deprecated ? { ...rest, deprecated: true } : rest;
    });
    await this.catalog.changed(saved.name);
    return this.describe(saved);
  }

  private describe(m: ModelDefinition): ModelDescription {
    const configured = (p: string) => this.catalog.isConfigured(p);
    const providers = m.routes.map((r) => r.provider).filter(configured);
    return {
      definition: m,
      qualityClass: qualityClass(m.quality),
      available: providers.length > 0,
      providers,
      routes: m.routes.map((r) => {
        const pricing = routePricing(m, r.provider);
        return {
          provider: r.provider,
          model: r.model,
          baseCostUsd: pricing.baseUsd,
          batchDiscount: pricing.batchDiscount ?? 0,
          priceOverride: r.pricing !== undefined,
          configured: configured(r.provider),
        };
      }),
    };
  }
}

/** Checks an input on its own and returns it as a definition; each refusal names its field. */
export function validateModelInput(input: ModelInputData): ModelDefinition {
  if (typeof input.name !== "string" || !NAME.test(input.name)) {
    throw new BadInputError(
      "name",
      "must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
    );
  }
  const mediaType = input.mediaType as MediaType;
  if (!MEDIA_TYPES.includes(mediaType)) {
    throw new BadInputError("mediaType", `must be one of ${MEDIA_TYPES.join(", ")}`);
  }
  if (!Number.isInteger(input.quality) || input.quality < 1 || input.quality > 10) {
    throw new BadInputError("quality", "must be an integer from 1 to 10");
  }

  const limits = validateLimits(mediaType, input.limits ?? {});
  const hasDuration = limits.minDurationSeconds !== undefined;
  const p = input.pricing;
  const baseUsd = price("pricing.baseCostUsd", p.baseCostUsd);
  const perMegapixel = p.perMegapixel ?? false;
  if (perMegapixel && mediaType === "AUDIO") {
    throw new BadInputError("pricing.perMegapixel", "does not apply to AUDIO");
  }
  if (p.referenceMegapixels != null) {
    if (!perMegapixel) {
      throw new BadInputError("pricing.referenceMegapixels", "applies only with perMegapixel");
    }
    if (!Number.isFinite(p.referenceMegapixels) || p.referenceMegapixels <= 0) {
      throw new BadInputError("pricing.referenceMegapixels", "must be greater than 0");
    }
    if (p.referenceMegapixels > 100) {
      throw new BadInputError("pricing.referenceMegapixels", "must be at most 100");
    }
  }
  const perSecond = p.perSecond ?? false;
  if (perSecond && !hasDuration) {
    throw new BadInputError("pricing.perSecond", `does not apply to ${mediaType}`);
  }
  const batchDiscount = discount("pricing.batchDiscount", p.batchDiscount);

  if (!Array.isArray(input.routes) || input.routes.length === 0) {
    throw new BadInputError("routes", "must name at least one provider");
  }
  if (input.routes.length > MAX_ROUTES) {
    throw new BadInputError("routes", `at most ${MAX_ROUTES} providers`);
  }
  const seen = new Set<string>();
  const routes: ProviderRoute[] = input.routes.map((r, i) => {
    const field = `routes[${i}]`;
    if (!PROVIDER_NAMES.includes(r.provider)) {
      throw new BadInputError(`${field}.provider`, `must be one of ${PROVIDER_NAMES.join(", ")}`);
    }
    if (seen.has(r.provider)) {
      throw new BadInputError(`${field}.provider`, `"${r.provider}" is listed twice`);
    }
    seen.add(r.provider);
    if (typeof r.model !== "string" || r.model.trim() !== r.model || !r.model) {
      throw new BadInputError(`${field}.model`, "must be the provider's model id, not blank");
    }
    if (r.model.length > 200 || [...r.model].some((c) => c.charCodeAt(0) < 0x20)) {
      throw new BadInputError(`${field}.model`, "must be at most 200 printable characters");
    }
    const pricing = {
      ...(r.baseCostUsd != null ? { baseUsd: price(`${field}.baseCostUsd`, r.baseCostUsd) } : {}),
      ...(r.batchDiscount != null
        ? { batchDiscount: discount(`${field}.batchDiscount`, r.batchDiscount) }
        : {}),
    };
    return {
      provider: r.provider,
      model: r.model,
      ...(Object.keys(pricing).length ? { pricing } : {}),
    };
  });

  const alternates = names("alternates", input.alternates, MAX_ALTERNATES);
  if (alternates.includes(input.name)) {
    throw new BadInputError(`alternates[${alternates.indexOf(input.name)}]`, "is the model itself");
  }
  const aliases = names("aliases", input.aliases, MAX_ALIASES);
  if (aliases.includes(input.name)) {
    throw new BadInputError(`aliases[${aliases.indexOf(input.name)}]`, "is the model's own name");
  }

  if (!Number.isFinite(input.typicalSeconds) || input.typicalSeconds <= 0) {
    throw new BadInputError("typicalSeconds", "must be greater than 0");
  }
  if (input.typicalSeconds > MAX_SECONDS) {
    throw new BadInputError("typicalSeconds", `must be at most ${MAX_SECONDS}`);
  }
  if (
    !Number.isInteger(input.timeoutSeconds) ||
    input.timeoutSeconds < 1 ||
    input.timeoutSeconds > MAX_SECONDS
  ) {
    throw new BadInputError("timeoutSeconds", `must be an integer from 1 to ${MAX_SECONDS}`);
  }
  if (input.timeoutSeconds < input.typicalSeconds) {
    throw new BadInputError("timeoutSeconds", "must be at least typicalSeconds");
  }

  return {
    name: input.name,
    mediaType,
    quality: input.quality,
    pricing: {
      baseUsd,
      ...(perMegapixel ? { perMegapixel: true } : {}),
      ...(p.referenceMegapixels != null ? { referenceMegapixels: p.referenceMegapixels } : {}),
      ...(perSecond ? { perSecond: true } : {}),
      ...(batchDiscount > 0 ? { batchDiscount } : {}),
    },
    limits,
    routes,
    typicalSeconds: input.typicalSeconds,
    timeoutSeconds: input.timeoutSeconds,
    ...(input.deprecated ? { deprecated: true } : {}),
    ...(alternates.length ? { alternates } : {}),
    ...(aliases.length ? { aliases } : {}),
  };
}

/**
 * What depends on the rest of the catalog: a model keeps its media type (stored
 * generations of it would otherwise change kind), alternates exist and produce the same
 * media, and no alias is another model's name or alias.
 */
export function checkAgainstCatalog(model: ModelDefinition, stored: ModelDefinition[]): void {
  const existing = stored.find((m) => m.name === model.name);
  if (existing && existing.mediaType !== model.mediaType) {
    throw new BadInputError(
      "mediaType",
      `"${model.name}" produces ${existing.mediaType}; a model's media type cannot change (create a new model)`,
    );
  }
  const others = stored.filter((m) => m.name !== model.name);
  const aliasOwner = (name: string) => others.find((m) => m.aliases?.includes(name));
  if (aliasOwner(model.name)) {
    throw new BadInputError("name", `is an alias of "${aliasOwner(model.name)!.name}"`);
  }
  (model.alternates ?? []).forEach((name, i) => {
    const alternate = others.find((m) => m.name === name);
    if (!alternate) throw new BadInputError(`alternates[${i}]`, `unknown model "${name}"`);
    if (alternate.mediaType !== model.mediaType) {
      throw new BadInputError(`alternates[${i}]`, `"${name}" does not produce ${model.mediaType}`);
    }
  });
  (model.aliases ?? []).forEach((alias, i) => {
    if (others.some((m) => m.name === alias)) {
      throw new BadInputError(`aliases[${i}]`, `"${alias}" is the name of another model`);
    }
    const owner = aliasOwner(alias);
    if (owner) {
      throw new BadInputError(`aliases[${i}]`, `"${alias}" is already an alias of "${owner.name}"`);
    }
  });
}

function validateLimits(mediaType: MediaType, l: ModelInputData["limits"]): ModelLimits {
  let sizes = { minSize: 0, maxSize: 0, defaultWidth: 0, defaultHeight: 0 };
  const sizeFields = ["minSize", "maxSize", "defaultWidth", "defaultHeight"] as const;
  if (mediaType === "AUDIO") {
    for (const f of sizeFields) {
      if (l[f] != null) throw new BadInputError(`limits.${f}`, "does not apply to AUDIO");
    }
  } else {
    for (const f of sizeFields) {
      const v = l[f];
      if (v == null) throw new BadInputError(`limits.${f}`, `is required for ${mediaType}`);
      if (!Number.isInteger(v) || v < 8 || v > MAX_SIZE || v % 8 !== 0) {
        throw new BadInputError(`limits.${f}`, `must be a multiple of 8 from 8 to ${MAX_SIZE}`);
      }
    }
    sizes = {
      minSize: l.minSize!,
      maxSize: l.maxSize!,
      defaultWidth: l.defaultWidth!,
      defaultHeight: l.defaultHeight!,
    };
    if (sizes.maxSize < sizes.minSize) {
      throw new BadInputError("limits.maxSize", "must be at least minSize");
    }
    for (const f of ["defaultWidth", "defaultHeight"] as const) {
      if (sizes[f] < sizes.minSize || sizes[f] > sizes.maxSize) {
        throw new BadInputError(`limits.${f}`, "must be from minSize to maxSize");
      }
    }
  }

  const durationFields = [
    "minDurationSeconds",
    "maxDurationSeconds",
    "defaultDurationSeconds",
  ] as const;
  if (mediaType === "IMAGE") {
    for (const f of durationFields) {
      if (l[f] != null) throw new BadInputError(`limits.${f}`, "does not apply to IMAGE");
    }
    return sizes;
  }
  for (const f of durationFields) {
    const v = l[f];
    if (v == null) throw new BadInputError(`limits.${f}`, `is required for ${mediaType}`);
    if (!Number.isFinite(v) || v <= 0 || v > MAX_DURATION_SECONDS) {
      throw new BadInputError(
        `limits.${f}`,
        `must be greater than 0 and at most ${MAX_DURATION_SECONDS} seconds`,
      );
    }
  }
  const min = l.minDurationSeconds!;
  const max = l.maxDurationSeconds!;
  const def = l.defaultDurationSeconds!;
  if (max < min)
    throw new BadInputError("limits.maxDurationSeconds", "must be at least minDurationSeconds");
  if (def < min || def > max) {
    throw new BadInputError(
      "limits.defaultDurationSeconds",
      "must be from minDurationSeconds to maxDurationSeconds",
    );
  }
  return {
    ...sizes,
    minDurationSeconds: min,
    maxDurationSeconds: max,
    defaultDurationSeconds: def,
  };
}

/** USD up to MAX_PRICE_USD, in whole micro-dollars like every stored amount. */
function price(field: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new BadInputError(field, "must be a price in USD, 0 or more");
  }
  if (value > MAX_PRICE_USD) throw new BadInputError(field, `must be at most ${MAX_PRICE_USD} USD`);
  if (Math.abs(value * 1e6 - Math.round(value * 1e6)) > 1e-6) {
    throw new BadInputError(field, "must be in whole micro-dollars (at most 6 decimals)");
  }
  return value;
}

function discount(field: string, value: number | null | undefined): number {
  if (value == null) return 0;
  if (!Number.isFinite(value) || value < 0 || value >= 1) {
    throw new BadInputError(field, "must be a fraction from 0 up to (not including) 1");
  }
  if (Math.abs(value * 1000 - Math.round(value * 1000)) > 1e-9) {
    throw new BadInputError(field, "must have at most 3 decimals");
  }
  return value;
}

function names(field: string, list: string[] | null | undefined, max: number): string[] {
  const values = list ?? [];
  if (values.length > max) throw new BadInputError(field, `at most ${max} names`);
  values.forEach((name, i) => {
    if (!NAME.test(name)) throw new BadInputError(`${field}[${i}]`, "is not a valid model name");
    if (values.indexOf(name) !== i) throw new BadInputError(`${field}[${i}]`, "is listed twice");
  });
  return values;
}
