export * from "./replicate.adapter";
