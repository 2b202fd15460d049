export * from "./callback.repository";
export * from "./callback.service";
export * from "./forbidden-address";
export * from "./safe-http";
export * from "./callback-secrets.service";
