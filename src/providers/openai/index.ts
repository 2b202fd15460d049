export * from "./openai-images.adapter";
