export * from "./metrics";
export * from "./metrics.handler";
