export * from "./fal.adapter";
