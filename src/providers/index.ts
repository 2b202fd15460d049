export * from "./provider.adapter";
export * from "./provider.registry";
