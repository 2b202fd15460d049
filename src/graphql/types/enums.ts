import { registerEnumType } from "type-graphql";

export enum MediaType {
  IMAGE = "IMAGE",
  VIDEO = "VIDEO",
  AUDIO = "AUDIO",
}
export enum GenerationStatus {
  QUEUED = "QUEUED",
  BATCHED = "BATCHED",
  PROCESSING = "PROCESSING",
  SUCCEEDED = "SUCCEEDED",
  FAILED = "FAILED",
  CANCELED = "CANCELED",
}
export enum Priority {
  INTERACTIVE = "INTERACTIVE",
  STANDARD = "STANDARD",
  BATCH = "BATCH",
}
export enum ContentType {
  GENERAL = "GENERAL",
  SOCIAL = "SOCIAL",
  CLIENT = "CLIENT",
  PRINT = "PRINT",
}
export enum Tier {
  FREE = "FREE",
  PRO = "PRO",
  ENTERPRISE = "ENTERPRISE",
}
export enum CacheMode {
  DEFAULT = "DEFAULT",
  BYPASS = "BYPASS",
  REFRESH = "REFRESH",
}
export enum CacheHitKind {
  EXACT = "EXACT",
  SEMANTIC = "SEMANTIC",
  INFLIGHT = "INFLIGHT",
}
export enum CircuitState {
  CLOSED = "CLOSED",
  OPEN = "OPEN",
  HALF_OPEN = "HALF_OPEN",
}
export enum Role {
  ADMIN = "ADMIN",
  PARTNER = "PARTNER",
}
export enum UsageDimension {
  DAY = "DAY",
  MODEL = "MODEL",
  PROVIDER = "PROVIDER",
  USER = "USER",
}
export enum QualityClass {
  ECONOMY = "ECONOMY",
  STANDARD = "STANDARD",
  PREMIUM = "PREMIUM",
}

registerEnumType(MediaType, { name: "MediaType" });
registerEnumType(GenerationStatus, { name: "GenerationStatus" });
registerEnumType(Priority, { name: "Priority", description: "Default STANDARD." });
registerEnumType(ContentType, { name: "ContentType" });
registerEnumType(Tier, { name: "Tier" });
registerEnumType(CacheMode, {
  name: "CacheMode",
  description: "REFRESH skips the lookup and stores the result.",
});
registerEnumType(CacheHitKind, { name: "CacheHitKind" });
registerEnumType(CircuitState, { name: "CircuitState" });
registerEnumType(Role, { name: "Role" });
registerEnumType(UsageDimension, { name: "UsageDimension" });
registerEnumType(QualityClass, {
  name: "QualityClass",
  description: "Model qualities 1-4 are ECONOMY, 5-7 STANDARD, 8-10 PREMIUM.",
});

export enum StatsWindow {
  HOUR = "HOUR",
  DAY = "DAY",
}
registerEnumType(StatsWindow, {
  name: "StatsWindow",
  description: "HOUR: the last hour in 5-minute buckets; DAY: the last 24 hours in hours.",
});
