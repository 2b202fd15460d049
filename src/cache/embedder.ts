/**
 * Turns prompts into vectors for the semantic cache, which compares them by cosine similarity.
 *
 * The contract: vectors are L2-normalized (so the dot product is the cosine), one per text and
 * in the caller's order, all of `dimensions` numbers. Vectors are comparable only within one
 * `id`; changing the model, its dimensions or the algorithm means a new id. What an embedder does
 * not promise: any particular similarity for paraphrases, nor retries — the cache treats a
 * failure as a miss.
 */
export interface Embedder {
  /** Names the embedding space (model and dimensions): vectors of different ids are never compared. */
  readonly id: string;
  readonly dimensions: number;
  /** One L2-normalized vector per text, in order. Throws EmbedderError when it cannot. */
  embed(texts: string[]): Promise<number[][]>;
}

/** An embedder could not produce vectors. The message never contains credentials. */
export class EmbedderError extends Error {
  /** True when the same call may succeed later (rate limit, server error, timeout, network). */
  readonly retryable: boolean;

  constructor(message: string, retryable: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EmbedderError";
    this.retryable = retryable;
  }
}

/** Scales `vector` in place to length 1; false when it cannot (zero or not finite). */
export function normalizeL2(vector: number[]): boolean {
  let sum = 0;
  for (const x of vector) sum += x * x;
  const norm = Math.sqrt(sum);
  if (!(norm > 0) || !Number.isFinite(norm)) return false;
  for (let i = 0; i < vector.length; i++) vector[i] = vector[i]! / norm;
  return true;
}
