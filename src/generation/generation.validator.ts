import { createHash } from "node:crypto";
import { normalizePrompt } from "../cache/cache-key";
import { BadInputError } from "../common/errors";
import { assertStorableText } from "../common/text";
import type { GenerationParams, MediaType, Priority, Tier } from "../entities";
import type { ModelCatalog, ModelDefinition } from "../cost/model-catalog";
import {
  CONTENT_TYPES,
  DEFAULT_TIER,
  qualityClass,
  selectModel,
  tierCeiling,
  type ContentType,
} from "../cost/model-selector";
import type { GenerateRequest } from "./generation.input";
import type { PassRates } from "../quality/pass-rates";

export const MAX_PROMPT_LENGTH = 4000;
const MAX_IDEMPOTENCY_KEY_LENGTH = 255;
const MAX_METADATA_BYTES = 16 * 1024;
const MAX_SEED = 2 ** 31 - 1;

/** DEFAULT: look up and store. BYPASS: neither. REFRESH: skip the lookup, store the result. */
export type CacheMode = "DEFAULT" | "BYPASS" | "REFRESH";
const CACHE_MODES: readonly CacheMode[] = ["DEFAULT", "BYPASS", "REFRESH"];

/** A request that passed validation, with every default filled in. */
export interface NormalizedRequest {
  mediaType: MediaType;
  prompt: string;
  negativePrompt: string | null;
  model: ModelDefinition;
  seed: number;
  /** Whether the caller chose the seed (then only an exact hit may answer). */
  seedGiven: boolean;
  priority: Priority;
  cacheMode: CacheMode;
  params: GenerationParams;
  idempotencyKey: string | null;
  /** Hash of everything that defines the request, to compare reuses of an idempotency key. */
  requestHash: string;
}

export { normalizePrompt };

/** The seed used when none is given: stable for the same normalized prompt. */
export function seedFromPrompt(prompt: string): number {
  return createHash("sha256").update(normalizePrompt(prompt)).digest().readUInt32BE(0) & MAX_SEED;
}

/**
 * Checks a `generate` input against the model it resolves to, and fills in defaults.
 * Every refusal names the field at fault; nothing is stored before this passes.
 */
export function validateGenerateRequest(
  catalog: ModelCatalog,
  input: GenerateRequest,
  /** The end user charged: the input's, or the one a client token implies. */
  userId: string | null,
  /** The end user's tier, which bounds the models it may use; PRO when not known. */
  tier: Tier = DEFAULT_TIER,
  /** Recent quality pass rates, which make selection rank by cost per accepted output. */
  passRates?: PassRates,
): NormalizedRequest {
  assertStorableText("prompt", input.prompt);
  assertStorableText("negativePrompt", input.negativePrompt);
  assertStorableText("idempotencyKey", input.idempotencyKey);
  assertStorableText("callbackUrl", input.callbackUrl);
  const prompt = input.prompt?.trim() ?? "";
  if (!prompt) throw new BadInputError("prompt", "must not be empty");
  if (prompt.length > MAX_PROMPT_LENGTH) {
    throw new BadInputError(
      "prompt",
      `must be at most ${MAX_PROMPT_LENGTH} characters (got ${prompt.length})`,
    );
  }
  const negativePrompt = input.negativePrompt?.trim() || null;
  if (negativePrompt && negativePrompt.length > MAX_PROMPT_LENGTH) {
    throw new BadInputError("negativePrompt", `must be at most ${MAX_PROMPT_LENGTH} characters`);
  }
  if (
    input.quality != null &&
    (!Number.isInteger(input.quality) || input.quality < 1 || input.quality > 10)
  ) {
    throw new BadInputError("quality", "must be an integer from 1 to 10");
  }

  if (input.contentType != null && !CONTENT_TYPES.includes(input.contentType as ContentType)) {
    throw new BadInputError("contentType", `must be one of ${CONTENT_TYPES.join(", ")}`);
  }

  const model = resolveModel(catalog, input, tier, passRates);
  const fallbackModels = (input.fallbackModels ?? []).map((name, i) => {
    const m = catalog.get(name);
    if (!m) throw new BadInputError(`fallbackModels[${i}]`, `unknown model "${name}"`);
    if (m.mediaType !== input.mediaType) {
      throw new BadInputError(
        `fallbackModels[${i}]`,
        `model "${name}" does not produce ${input.mediaType}`,
      );
    }
    assertTierAllows(catalog, m, tier, `fallbackModels[${i}]`);
    return name;
  });
  if (fallbackModels.length > 5) throw new BadInputError("fallbackModels", "at most 5 models");

  const { width, height } = validateSize(model, input);
  const durationSeconds = validateDuration(model, input);

  if (
    input.seed != null &&
    (!Number.isInteger(input.seed) || input.seed < 0 || input.seed > MAX_SEED)
  ) {
    throw new BadInputError("seed", `must be an integer from 0 to ${MAX_SEED}`);
  }
  const seed = input.seed ?? seedFromPrompt(prompt);
  const callbackUrl = validateCallbackUrl(input.callbackUrl);
  const idempotencyKey = input.idempotencyKey ?? null;
  if (
    idempotencyKey !== null &&
    (idempotencyKey.length === 0 || idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH)
  ) {
    throw new BadInputError(
      "idempotencyKey",
      `must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`,
    );
  }
  if (input.metadata !== undefined && input.metadata !== null) {
    if (typeof input.metadata !== "object" || Array.isArray(input.metadata)) {
      throw new BadInputError("metadata", "must be a JSON object");
    }
    const json = JSON.stringify(input.metadata);
    if (json.includes("\\u0000"))
      throw new BadInputError("metadata", "must not contain NUL characters");
    if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
      throw new BadInputError("metadata", `must be at most ${MAX_METADATA_BYTES} bytes as JSON`);
    }
  }

  const priority = input.priority ?? "STANDARD";
  const cacheMode = (input.cache ?? "DEFAULT") as CacheMode;
  if (!CACHE_MODES.includes(cacheMode)) {
    throw new BadInputError("cache", `must be one of ${CACHE_MODES.join(", ")}`);
  }
  const params: GenerationParams = {
    width,
    height,
    durationSeconds,
    quality: input.quality ?? undefined,
    contentType: input.contentType ?? undefined,
    fallbackModels: fallbackModels.length ? fallbackModels : undefined,
    cacheMode,
    callbackUrl,
    metadata: input.metadata ?? undefined,
    // Fallbacks chosen later (the catalog's alternates) stay within the tier too.
    maxQuality: limitedCeiling(tierCeiling(catalog, model.mediaType, tier)),
  };
  const requestHash = createHash("sha256")
    .update(
      JSON.stringify([
        userId,
        input.mediaType,
        prompt,
        negativePrompt,
        input.model ?? null,
        fallbackModels,
        input.quality ?? null,
        input.contentType ?? null,
        width ?? null,
        height ?? null,
        durationSeconds ?? null,
        input.seed ?? null,
        priority,
        params.cacheMode,
        callbackUrl ?? null,
        input.metadata ?? null,
      ]),
    )
    .digest("hex");
  return {
    mediaType: input.mediaType,
    prompt,
    negativePrompt,
    model,
    seed,
    seedGiven: input.seed != null,
    priority,
    cacheMode,
    params,
    idempotencyKey,
    requestHash,
  };
}

/**
 * The model named (by name or alias), else the one the selection policy picks. A named
 * model is taken as asked, deprecated or not and whatever the content type, except that
 * the tier's ceiling holds: FREE cannot name its way into a class it does not include.
 */
function resolveModel(
  catalog: ModelCatalog,
  input: GenerateRequest,
  tier: Tier,
  passRates?: PassRates,
): ModelDefinition {
  if (input.model != null) {
    const model = catalog.get(input.model);
    if (!model) throw new BadInputError("model", `unknown model "${input.model}"`);
    if (model.mediaType !== input.mediaType) {
      throw new BadInputError(
        "model",
        `model "${model.name}" produces ${model.mediaType}, not ${input.mediaType}`,
      );
    }
    assertTierAllows(catalog, model, tier, "model");
    return model;
  }
  const selected = selectModel(
    catalog,
    {
      mediaType: input.mediaType,
      quality: input.quality ?? undefined,
      contentType: (input.contentType ?? undefined) as ContentType | undefined,
      tier,
    },
    passRates,
  );
  if (!selected) throw new BadInputError("mediaType", `no model available for ${input.mediaType}`);
  return selected;
}

function assertTierAllows(
  catalog: ModelCatalog,
  model: ModelDefinition,
  tier: Tier,
  field: string,
): void {
  const ceiling = tierCeiling(catalog, model.mediaType, tier);
  if (model.quality > ceiling) {
    throw new BadInputError(
      field,
      `model "${model.name}" is in the ${qualityClass(model.quality)} class, above what the ${tier} tier includes (${qualityClass(ceiling)})`,
    );
  }
}

function validateSize(
  model: ModelDefinition,
  input: GenerateRequest,
): { width?: number; height?: number } {
  if (model.mediaType === "AUDIO") {
    if (input.width != null) throw new BadInputError("width", "does not apply to AUDIO");
    if (input.height != null) throw new BadInputError("height", "does not apply to AUDIO");
    return {};
  }
  const { minSize, maxSize } = model.limits;
  const check = (field: "width" | "height", value: number | null | undefined, fallback: number) => {
    if (value == null) return fallback;
    if (!Number.isInteger(value) || value < minSize || value > maxSize) {
      throw new BadInputError(
        field,
        `must be an integer from ${minSize} to ${maxSize} for ${model.name}`,
      );
    }
    if (value % 8 !== 0) throw new BadInputError(field, "must be a multiple of 8");
    return value;
  };
  return {
    width: check("width", input.width, model.limits.defaultWidth),
    height: check("height", input.height, model.limits.defaultHeight),
  };
}

function validateDuration(model: ModelDefinition, input: GenerateRequest): number | undefined {
  const { minDurationSeconds: min, maxDurationSeconds: max, defaultDurationSeconds } = model.limits;
  if (min === undefined || max === undefined) {
    if (input.durationSeconds != null) {
      throw new BadInputError("durationSeconds", `does not apply to ${model.mediaType}`);
    }
    return undefined;
  }
  const d = input.durationSeconds ?? defaultDurationSeconds ?? min;
  if (!Number.isFinite(d) || d < min || d > max) {
    throw new BadInputError(
      "durationSeconds",
      `must be from ${min} to ${max} seconds for ${model.name}`,
    );
  }
  return d;
}

function validateCallbackUrl(value: string | null | undefined): string | undefined {
  if (value == null) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new BadInputError("callbackUrl", "must be an absolute http(s) URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new BadInputError("callbackUrl", "must be an absolute http(s) URL");
  }
  if (url.username || url.password)
    throw new BadInputError("callbackUrl", "must not contain credentials");
  if (value.length > 2048)
    throw new BadInputError("callbackUrl", "must be at most 2048 characters");
  return url.toString();
}

/** A tier's ceiling, kept only when it limits anything (qualities go up to 10). */
function limitedCeiling(ceiling: number): number | undefined {
  return ceiling < 10 ? ceiling : undefined;
}
