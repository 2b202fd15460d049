export * from "./quality.types";
export * from "./quality.gate";
export * from "./technical.check";
export * from "./alignment.check";
export * from "./moderation.check";
export * from "./quality-gate.factory";
export * from "./pass-rate.repository";
export * from "./pass-rates";
