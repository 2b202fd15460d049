export * from "./provider.adapter";
export * from "./provider.registry";
export * from "./provider.factory";
