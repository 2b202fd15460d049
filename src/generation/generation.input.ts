import type { MediaType, Priority } from "../entities";

/** `generate`'s input as the domain receives it (the GraphQL input type implements this). */
export interface GenerateRequest {
  userId?: string | null;
  mediaType: MediaType;
  prompt: string;
  negativePrompt?: string | null;
  model?: string | null;
  fallbackModels?: string[] | null;
  quality?: number | null;
  contentType?: string | null;
  width?: number | null;
  height?: number | null;
  durationSeconds?: number | null;
  seed?: number | null;
  priority?: Priority | null;
  cache?: string | null;
  callbackUrl?: string | null;
  idempotencyKey?: string | null;
  metadata?: unknown;
}
