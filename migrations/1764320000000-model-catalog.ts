import type { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The model catalog moves from code to Postgres, where operators edit it (`upsertModel`,
 * `deprecateModel`). Seeded with the models the code defined at this point (the simulated
 * provider's and the real providers'), copied here so that what this migration writes never
 * changes afterwards. Models are never deleted: stored generations name them.
 */
export class ModelCatalog1764320000000 implements MigrationInterface {
  name = "ModelCatalog1764320000000";

  async up(q: QueryRunner): Promise<void> {
    // Money is numeric(14, 6) like every other USD column; a batch discount is a fraction.
    // Sizes are 0 for media without them (audio); durations null for media without them.
    await q.query(`
      CREATE TABLE models (
        name text PRIMARY KEY,
        media_type text NOT NULL CHECK (media_type IN ('IMAGE', 'VIDEO', 'AUDIO')),
        quality smallint NOT NULL CHECK (quality BETWEEN 1 AND 10),
        base_usd numeric(14, 6) NOT NULL CHECK (base_usd >= 0),
        per_megapixel boolean NOT NULL DEFAULT false,
        reference_megapixels numeric(10, 4) CHECK (reference_megapixels > 0),
        per_second boolean NOT NULL DEFAULT false,
        batch_discount numeric(4, 3) NOT NULL DEFAULT 0
          CHECK (batch_discount >= 0 AND batch_discount < 1),
        min_size integer NOT NULL CHECK (min_size >= 0),
        max_size integer NOT NULL CHECK (max_size >= min_size),
        default_width integer NOT NULL,
        default_height integer NOT NULL,
        min_duration_seconds double precision,
        max_duration_seconds double precision,
        default_duration_seconds double precision,
        typical_seconds double precision NOT NULL CHECK (typical_seconds > 0),
        timeout_seconds integer NOT NULL CHECK (timeout_seconds > 0),
        alternates text[] NOT NULL DEFAULT '{}',
        aliases text[] NOT NULL DEFAULT '{}',
        deprecated boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    // Providers of a model in preference order, each under its own model id, with its own
    // price where it differs from the model's (null: the model's).
    await q.query(`
      CREATE TABLE model_routes (
        model text NOT NULL REFERENCES models(name) ON DELETE CASCADE,
        position smallint NOT NULL CHECK (position >= 0),
        provider text NOT NULL,
        provider_model text NOT NULL,
        base_usd numeric(14, 6) CHECK (base_usd >= 0),
        batch_discount numeric(4, 3) CHECK (batch_discount >= 0 AND batch_discount < 1),
        PRIMARY KEY (model, provider),
        UNIQUE (model, position)
      )`);

    for (const m of SEED) {
      const l = m.limits as SeedLimits;
      const p = m.pricing as SeedPricing;
      const extra = m as { alternates?: string[]; aliases?: string[] };
      await q.query(
        `INSERT INTO models (name, media_type, quality, base_usd, per_megapixel,
           reference_megapixels, per_second, batch_discount, min_size, max_size, default_width,
           default_height, min_duration_seconds, max_duration_seconds, default_duration_seconds,
           typical_seconds, timeout_seconds, alternates, aliases)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
           $18, $19)`,
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
          extra.alternates ?? [],
          extra.aliases ?? [],
        ],
      );
      for (const [position, r] of m.routes.entries()) {
        await q.query(
          `INSERT INTO model_routes (model, position, provider, provider_model)
           VALUES ($1, $2, $3, $4)`,
          [m.name, position, r.provider, r.model],
        );
      }
    }
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS model_routes`);
    await q.query(`DROP TABLE IF EXISTS models`);
  }
}

interface SeedPricing {
  baseUsd: number;
  perMegapixel?: boolean;
  referenceMegapixels?: number;
  perSecond?: boolean;
  batchDiscount?: number;
}

interface SeedLimits {
  minSize: number;
  maxSize: number;
  defaultWidth: number;
  defaultHeight: number;
  minDurationSeconds?: number;
  maxDurationSeconds?: number;
  defaultDurationSeconds?: number;
}

const SEED = [
  {
    name: "sim-image-fast",
    mediaType: "IMAGE",
    quality: 4,
    pricing: {
      baseUsd: 0.003,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 64,
      maxSize: 1536,
      defaultWidth: 512,
      defaultHeight: 512,
    },
    routes: [
      {
        provider: "simulated",
        model: "sim/image",
      },
      {
        provider: "simulated-2",
        model: "sim/image",
      },
      {
        provider: "simulated-3",
        model: "sim/image",
      },
    ],
    typicalSeconds: 2,
    timeoutSeconds: 120,
  },
  {
    name: "sim-image-standard",
    mediaType: "IMAGE",
    quality: 7,
    pricing: {
      baseUsd: 0.025,
      perMegapixel: true,
      referenceMegapixels: 1,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 64,
      maxSize: 2048,
      defaultWidth: 1024,
      defaultHeight: 1024,
    },
    routes: [
      {
        provider: "simulated",
        model: "sim/image",
      },
      {
        provider: "simulated-2",
        model: "sim/image",
      },
      {
        provider: "simulated-3",
        model: "sim/image",
      },
    ],
    typicalSeconds: 4,
    timeoutSeconds: 120,
  },
  {
    name: "sim-image-pro",
    mediaType: "IMAGE",
    quality: 9,
    pricing: {
      baseUsd: 0.055,
      perMegapixel: true,
      referenceMegapixels: 1,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 64,
      maxSize: 2048,
      defaultWidth: 1024,
      defaultHeight: 1024,
    },
    routes: [
      {
        provider: "simulated",
        model: "sim/image",
      },
      {
        provider: "simulated-2",
        model: "sim/image",
      },
      {
        provider: "simulated-3",
        model: "sim/image",
      },
    ],
    typicalSeconds: 8,
    timeoutSeconds: 180,
  },
  {
    name: "sim-video",
    mediaType: "VIDEO",
    quality: 6,
    pricing: {
      baseUsd: 0.05,
      perSecond: true,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 64,
      maxSize: 1024,
      defaultWidth: 512,
      defaultHeight: 512,
      minDurationSeconds: 1,
      maxDurationSeconds: 10,
      defaultDurationSeconds: 2,
    },
    routes: [
      {
        provider: "simulated",
        model: "sim/video",
      },
      {
        provider: "simulated-2",
        model: "sim/video",
      },
      {
        provider: "simulated-3",
        model: "sim/video",
      },
    ],
    typicalSeconds: 20,
    timeoutSeconds: 600,
  },
  {
    name: "sim-audio",
    mediaType: "AUDIO",
    quality: 6,
    pricing: {
      baseUsd: 0.002,
      perSecond: true,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 0,
      maxSize: 0,
      defaultWidth: 0,
      defaultHeight: 0,
      minDurationSeconds: 1,
      maxDurationSeconds: 60,
      defaultDurationSeconds: 5,
    },
    routes: [
      {
        provider: "simulated",
        model: "sim/audio",
      },
      {
        provider: "simulated-2",
        model: "sim/audio",
      },
      {
        provider: "simulated-3",
        model: "sim/audio",
      },
    ],
    typicalSeconds: 5,
    timeoutSeconds: 120,
  },
  {
    name: "flux-schnell",
    mediaType: "IMAGE",
    quality: 5,
    pricing: {
      baseUsd: 0.003,
    },
    limits: {
      minSize: 64,
      maxSize: 2048,
      defaultWidth: 1024,
      defaultHeight: 1024,
    },
    routes: [
      {
        provider: "replicate",
        model: "black-forest-labs/flux-schnell",
      },
      {
        provider: "fal",
        model: "fal-ai/flux/schnell",
      },
      {
        provider: "wavespeed",
        model: "wavespeed-ai/flux-schnell",
      },
    ],
    alternates: ["flux-dev"],
    typicalSeconds: 3,
    timeoutSeconds: 120,
  },
  {
    name: "flux-dev",
    mediaType: "IMAGE",
    quality: 7,
    pricing: {
      baseUsd: 0.025,
      perMegapixel: true,
      referenceMegapixels: 1,
    },
    limits: {
      minSize: 64,
      maxSize: 2048,
      defaultWidth: 1024,
      defaultHeight: 1024,
    },
    routes: [
      {
        provider: "replicate",
        model: "black-forest-labs/flux-dev",
      },
      {
        provider: "fal",
        model: "fal-ai/flux/dev",
      },
      {
        provider: "wavespeed",
        model: "wavespeed-ai/flux-dev",
      },
    ],
    alternates: ["flux-schnell"],
    typicalSeconds: 10,
    timeoutSeconds: 300,
  },
  {
    name: "gpt-image-1.5",
    mediaType: "IMAGE",
    quality: 9,
    pricing: {
      baseUsd: 0.034,
      batchDiscount: 0.5,
    },
    limits: {
      minSize: 1024,
      maxSize: 1536,
      defaultWidth: 1024,
      defaultHeight: 1024,
    },
    routes: [
      {
        provider: "openai",
        model: "gpt-image-1.5",
      },
    ],
    aliases: ["gpt-image-1", "dall-e-3"],
    alternates: ["flux-dev"],
    typicalSeconds: 15,
    timeoutSeconds: 180,
  },
];
