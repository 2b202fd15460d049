import type { Config } from "../config";
import type { Embedder } from "./embedder";
import { LexicalEmbedder } from "./lexical.embedder";
import { OpenAiCompatibleEmbedder } from "./openai.embedder";

/** The configured embedder: an OpenAI-compatible API when one is named, else the local lexical one. */
export function createEmbedder(config: Config): Embedder {
  if (!config.EMBEDDINGS_URL) return new LexicalEmbedder();
  return new OpenAiCompatibleEmbedder({
    baseUrl: config.EMBEDDINGS_URL,
    apiKey: config.EMBEDDINGS_API_KEY,
    model: config.EMBEDDINGS_MODEL,
    dimensions: config.EMBEDDINGS_DIMENSIONS,
    requestDimensions: config.EMBEDDINGS_REQUEST_DIMENSIONS,
    timeoutMs: config.EMBEDDINGS_TIMEOUT_MS,
  });
}
