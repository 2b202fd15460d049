export * from "./openai-images.adapter";
export * from "./openai-batch.api";
