/*
 * What gengate sends to OpenAI's `POST /v1/images/generations` and how it reads the answer,
 * shared by the synchronous adapter and the Batch API (whose input lines carry the same body
 * and whose output lines the same answer). Sources: see `openai-images.adapter.ts`.
 */
import {
  ProviderError,
  ProviderErrorCode,
  type ProviderOutput,
  type ProviderRequest,
} from "../provider.adapter";
import { errorForStatus } from "../provider.http";

export interface ImagesResponse {
  created?: number;
  data?: Array<{ b64_json?: string; url?: string; revised_prompt?: string }>;
}

export interface OpenAIErrorBody {
  error?: { message?: string; type?: string; param?: string | null; code?: string | null };
}

/** What the API accepts for one model family, and what we ask of it. */
interface ImageModelFamily {
  /** Supported sizes; the first is the API's default, used when no size is asked for. */
  sizes: ReadonlyArray<readonly [width: number, height: number]>;
  /** Quality we request; fixed so the price is known (the catalog prices these qualities). */
  quality?: string;
  /** DALL·E answers URLs unless asked for base64; GPT image models reject the parameter. */
  responseFormat?: "b64_json";
}

const DALL_E_2: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [512, 512],
    [256, 256],
  ],
  // `standard` is DALL·E 2's only quality: left out.
  responseFormat: "b64_json",
};

const DALL_E_3: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [1792, 1024],
    [1024, 1792],
  ],
  quality: "standard",
  responseFormat: "b64_json",
};

/** Every GPT image model (`gpt-image-1`, `gpt-image-1-mini`, `gpt-image-1.5`, …). */
const GPT_IMAGE: ImageModelFamily = {
  sizes: [
    [1024, 1024],
    [1536, 1024],
    [1024, 1536],
  ],
  quality: "medium",
};

const FAMILIES: Record<string, ImageModelFamily> = { "dall-e-2": DALL_E_2, "dall-e-3": DALL_E_3 };

/** USD per image by model, then `${quality} ${size}`, from OpenAI's model pages. */
const PRICES: Record<string, Record<string, number>> = {
  "gpt-image-1": {
    "low 1024x1024": 0.011,
    "low 1024x1536": 0.016,
    "low 1536x1024": 0.016,
    "medium 1024x1024": 0.042,
    "medium 1024x1536": 0.063,
    "medium 1536x1024": 0.063,
    "high 1024x1024": 0.167,
    "high 1024x1536": 0.25,
    "high 1536x1024": 0.25,
  },
  "gpt-image-1-mini": {
    "low 1024x1024": 0.005,
    "low 1024x1536": 0.006,
    "low 1536x1024": 0.006,
    "medium 1024x1024": 0.011,
    "medium 1024x1536": 0.015,
    "medium 1536x1024": 0.015,
    "high 1024x1024": 0.036,
    "high 1024x1536": 0.052,
    "high 1536x1024": 0.052,
  },
};

/** Refusal codes: DALL·E's and the GPT image models'. */
const REFUSAL_CODES = new Set(["content_policy_violation", "moderation_blocked"]);

/** One image request as sent: the JSON body, and the size it will come back at. */
export interface ImagesCall {
  body: Record<string, unknown>;
  width: number;
  height: number;
}

/**
 * The body of `POST /v1/images/generations` for a gengate request. There is no seed and no
 * negative prompt in this API: both are left out. Throws INVALID_INPUT for media other than
 * images, without any call.
 */
export function imagesCall(provider: string, req: ProviderRequest): ImagesCall {
  if (req.mediaType !== "IMAGE") {
    throw new ProviderError(
      `${provider}: ${req.model} generates images, not ${req.mediaType.toLowerCase()}`,
      ProviderErrorCode.InvalidInput,
      false,
    );
  }
  const family = familyOf(req.model);
  const [width, height] = closestSize(family.sizes, req.width, req.height);
  const body: Record<string, unknown> = {
    model: req.model,
    prompt: req.prompt,
    n: 1,
    size: `${width}x${height}`,
  };
  if (family.quality) body.quality = family.quality;
  if (family.responseFormat) body.response_format = family.responseFormat;
  return { body, width, height };
}

/**
 * The list price of one image of this model at this size, at the quality `imagesCall` asks
 * for; undefined where OpenAI's own pages give none (DALL·E, newer models: the catalog prices
 * those).
 */
export function imagePrice(model: string, width: number, height: number): number | undefined {
  const quality = familyOf(model).quality;
  return quality ? PRICES[model]?.[`${quality} ${width}x${height}`] : undefined;
}

/** The image of an answer, as gengate's output: PNG bytes (the API's default format). */
export function imageOutput(
  provider: string,
  answer: ImagesResponse | null | undefined,
  size: { width?: number; height?: number },
): ProviderOutput {
  const b64 = answer?.data?.[0]?.b64_json;
  if (!b64) {
    throw new ProviderError(
      `${provider}: answer has no image`,
      ProviderErrorCode.ProviderError,
      true,
    );
  }
  return {
    data: Buffer.from(b64, "base64"),
    contentType: "image/png",
    width: size.width,
    height: size.height,
  };
}

/** An error answer of the Images API as a `ProviderError`: refusals, retired models, the rest by status. */
export function openAIError(
  provider: string,
  status: number,
  body: OpenAIErrorBody | null,
  headers: Headers,
): ProviderError {
  const code = body?.error?.code ?? undefined;
  const message = `${provider}: HTTP ${status}: ${body?.error?.message?.slice(0, 300) ?? "error"}`;
  if (code && REFUSAL_CODES.has(code)) {
    return new ProviderError(message, ProviderErrorCode.ContentRefused, false);
  }
  if (code === "model_not_found") {
    return new ProviderError(message, ProviderErrorCode.ModelNotFound, false);
  }
  // The official SDK retries conflicts (409) like rate limits.
  if (status === 409) return new ProviderError(message, ProviderErrorCode.ProviderError, true);
  return errorForStatus(provider, status, body, headers);
}

function familyOf(model: string): ImageModelFamily {
  return FAMILIES[model] ?? GPT_IMAGE;
}

/** The supported size nearest in aspect ratio, then in area (both compared as log ratios). */
function closestSize(
  sizes: ImageModelFamily["sizes"],
  width: number | undefined,
  height: number | undefined,
): readonly [number, number] {
  const w = width ?? height;
  const h = height ?? width;
  if (!w || !h) return sizes[0]!;
  const distance = ([sw, sh]: readonly [number, number]) => ({
    aspect: Math.abs(Math.log(sw / sh) - Math.log(w / h)),
    area: Math.abs(Math.log((sw * sh) / (w * h))),
  });
  return [...sizes].sort((a, b) => {
    const [da, db] = [distance(a), distance(b)];
    return Math.abs(da.aspect - db.aspect) > 1e-9 ? da.aspect - db.aspect : da.area - db.area;
  })[0]!;
}
