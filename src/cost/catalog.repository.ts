import type { DataSource, EntityManager } from "typeorm";
import type { MediaType } from "../entities";
import type { ModelDefinition, ProviderRoute } from "./model-catalog";

// Any constant works; every process takes the same one to edit the catalog.
const CATALOG_EDIT_LOCK = 74_656_002;

interface ModelRow {
  name: string;
  media_type: MediaType;
  quality: number;
  base_usd: string;
  per_megapixel: boolean;
  reference_megapixels: string | null;
  per_second: boolean;
  batch_discount: string;
  min_size: number;
  max_size: number;
  default_width: number;
  default_height: number;
  min_duration_seconds: number | null;
  max_duration_seconds: number | null;
  default_duration_seconds: number | null;
  typical_seconds: number;
  timeout_seconds: number;
  alternates: string[];
  aliases: string[];
  deprecated: boolean;
}

interface RouteRow {
  model: string;
  provider: string;
  provider_model: string;
  base_usd: string | null;
  batch_discount: string | null;
}

/**
 * The model catalog's tables. Definitions come back in one canonical shape: optional fields
 * are absent when they hold their default (no per-megapixel pricing, no batch discount, no
 * aliases, not deprecated), which is also how the code writes them.
 */
export class CatalogRepository {
  constructor(private readonly db: DataSource) {}

  loadAll(): Promise<ModelDefinition[]> {
    return loadAll(this.db.manager);
  }

  /**
   * Runs `edit` with every stored model, one edit at a time across all processes, and
   * writes what it returns; `edit` throws to refuse. Returns the model as stored.
   */
  async edit(edit: (stored: ModelDefinition[]) => ModelDefinition): Promise<ModelDefinition> {
    return this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [CATALOG_EDIT_LOCK]);
      const model = edit(await loadAll(tx));
      await save(tx, model);
      return (await loadAll(tx, model.name))[0]!;
    });
  }
}

async function loadAll(db: EntityManager, name?: string): Promise<ModelDefinition[]> {
  const where = name === undefined ? "" : "WHERE name = $1";
  const params = name === undefined ? [] : [name];
  const models = (await db.query(
    `SELECT * FROM models ${where} ORDER BY name`,
    params,
  )) as ModelRow[];
  const routes = (await db.query(
    `SELECT * FROM model_routes ${where.replace("name", "model")} ORDER BY model, position`,
    params,
  )) as RouteRow[];
  const byModel = new Map<string, ProviderRoute[]>();
  for (const r of routes) {
    const list = byModel.get(r.model) ?? [];
    list.push(toRoute(r));
    byModel.set(r.model, list);
  }
  return models.map((m) => toDefinition(m, byModel.get(m.name) ?? []));
}

async function save(db: EntityManager, m: ModelDefinition): Promise<void> {
  const p = m.pricing;
  const l = m.limits;
  await db.query(
    `INSERT INTO models (name, media_type, quality, base_usd, per_megapixel, reference_megapixels,
       per_second, batch_discount, min_size, max_size, default_width, default_height,
       min_duration_seconds, max_duration_seconds, default_duration_seconds, typical_seconds,
       timeout_seconds, alternates, aliases, deprecated)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
       $19, $20)
     ON CONFLICT (name) DO UPDATE SET
       media_type = excluded.media_type, quality = excluded.quality,
       base_usd = excluded.base_usd, per_megapixel = excluded.per_megapixel,
       reference_megapixels = excluded.reference_megapixels, per_second = excluded.per_second,
       batch_discount = excluded.batch_discount, min_size = excluded.min_size,
       max_size = excluded.max_size, default_width = excluded.default_width,
       default_height = excluded.default_height,
       min_duration_seconds = excluded.min_duration_seconds,
       max_duration_seconds = excluded.max_duration_seconds,
       default_duration_seconds = excluded.default_duration_seconds,
       typical_seconds = excluded.typical_seconds, timeout_seconds = excluded.timeout_seconds,
       alternates = excluded.alternates, aliases = excluded.aliases,
       deprecated = excluded.deprecated, updated_at = now()`,
    [
      m.name,
      m.mediaType,
      m.quality,
      p.baseUsd,
      p.perMegapixel ?? false,
      p.referenceMegapixels ?? null,
      p.perSecond ?? false,
      p.batchDiscount ?? 0,
      l.minSize,
      l.maxSize,
      l.defaultWidth,
      l.defaultHeight,
      l.minDurationSeconds ?? null,
      l.maxDurationSeconds ?? null,
      l.defaultDurationSeconds ?? null,
      m.typicalSeconds,
      m.timeoutSeconds,
      m.alternates ?? [],
      m.aliases ?? [],
      m.deprecated ?? false,
    ],
  );
  await db.query(`DELETE FROM model_routes WHERE model = $1`, [m.name]);
  for (const [position, r] of m.routes.entries()) {
    await db.query(
      `INSERT INTO model_routes (model, position, provider, provider_model, base_usd, batch_discount)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        m.name,
        position,
        r.provider,
        r.model,
        r.pricing?.baseUsd ?? null,
        r.pricing?.batchDiscount ?? null,
      ],
    );
  }
}

function toDefinition(m: ModelRow, routes: ProviderRoute[]): ModelDefinition {
  const batchDiscount = Number(m.batch_discount);
  return {
    name: m.name,
    mediaType: m.media_type,
    quality: m.quality,
    pricing: {
      baseUsd: Number(m.base_usd),
      ...(m.per_megapixel ? { perMegapixel: true } : {}),
      ...(m.reference_megapixels !== null
        ? { referenceMegapixels: Number(m.reference_megapixels) }
        : {}),
      ...(m.per_second ? { perSecond: true } : {}),
      ...(batchDiscount > 0 ? { batchDiscount } : {}),
    },
    limits: {
      minSize: m.min_size,
      maxSize: m.max_size,
      defaultWidth: m.default_width,
      defaultHeight: m.default_height,
      ...(m.min_duration_seconds !== null ? { minDurationSeconds: m.min_duration_seconds } : {}),
      ...(m.max_duration_seconds !== null ? { maxDurationSeconds: m.max_duration_seconds } : {}),
      ...(m.default_duration_seconds !== null
        ? { defaultDurationSeconds: m.default_duration_seconds }
        : {}),
    },
    routes,
    typicalSeconds: m.typical_seconds,
    timeoutSeconds: m.timeout_seconds,
    ...(m.deprecated ? { deprecated: true } : {}),
    ...(m.alternates.length ? { alternates: m.alternates } : {}),
    ...(m.aliases.length ? { aliases: m.aliases } : {}),
  };
}

function toRoute(r: RouteRow): ProviderRoute {
  const pricing = {
    ...(r.base_usd !== null ? { baseUsd: Number(r.base_usd) } : {}),
    ...(r.batch_discount !== null ? { batchDiscount: Number(r.batch_discount) } : {}),
  };
  return {
    provider: r.provider,
    model: r.provider_model,
    ...(Object.keys(pricing).length ? { pricing } : {}),
  };
}
