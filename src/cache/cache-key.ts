import { createHash } from "node:crypto";
import type { MediaType } from "../entities";

/** What defines a generation's output: the fields every cache key is made of. */
export interface CacheableRequest {
  model: string;
  mediaType: MediaType;
  prompt: string;
  negativePrompt: string | null;
  width?: number | null;
  height?: number | null;
  durationSeconds?: number | null;
  seed: number;
}

/** The prompt as the cache and the seed see it: case and spacing do not matter. */
export function normalizePrompt(prompt: string): string {
  return prompt.trim().toLowerCase().replace(/\s+/g, " ");
}

/**
 * The exact-cache key: a hash of the normalized parameters that decide the output. Never a
 * user, account, priority or time: identical requests from anyone share one result.
 */
export function exactCacheKey(r: CacheableRequest): string {
  return hash([
    "exact-v1",
    r.model,
    normalizePrompt(r.prompt),
    r.negativePrompt ? normalizePrompt(r.negativePrompt) : null,
    r.width ?? null,
    r.height ?? null,
    r.durationSeconds ?? null,
    r.seed,
  ]);
}

/**
 * What a semantic hit must share with the request: model, media type and output parameters.
 * The prompt is compared by embedding, and the seed is not part of it (a similar prompt's
 * result is as good as another seed's).
 */
export function semanticScopeKey(r: Omit<CacheableRequest, "prompt" | "seed">): string {
  return hash([
    "scope-v1",
    r.model,
    r.mediaType,
    r.negativePrompt ? normalizePrompt(r.negativePrompt) : null,
    r.width ?? null,
    r.height ?? null,
    r.durationSeconds ?? null,
  ]);
}

function hash(parts: unknown[]): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("base64url");
}
