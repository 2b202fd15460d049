export { type Embedder, EmbedderError, normalizeL2 } from "./embedder";
export { LexicalEmbedder, type LexicalEmbedderOptions, tokenize } from "./lexical.embedder";
export { OpenAiCompatibleEmbedder, type OpenAiCompatibleEmbedderOptions } from "./openai.embedder";
