import type { Logger } from "../common/logger";
import type { Config } from "../config";
import { AlignmentCheck } from "./alignment.check";
import { ModerationCheck } from "./moderation.check";
import { QualityGate } from "./quality.gate";
import type { OutputCheck } from "./quality.types";
import { TechnicalCheck } from "./technical.check";

/** The checks the configuration turns on, cheapest first (the gate stops at a failure). */
export function createQualityGate(config: Config, logger: Logger): QualityGate {
  const checks: OutputCheck[] = [];
  if (config.QUALITY_TECHNICAL) {
    checks.push(
      new TechnicalCheck({
        minStdDev: config.QUALITY_MIN_STDDEV,
        blackMaxMean: config.QUALITY_BLACK_MAX_MEAN,
        sizeTolerance: config.QUALITY_SIZE_TOLERANCE,
        durationTolerance: config.QUALITY_DURATION_TOLERANCE,
      }),
    );
  }
  if (config.QUALITY_ALIGNMENT_URL) {
    checks.push(
      new AlignmentCheck({
        url: config.QUALITY_ALIGNMENT_URL,
        apiKey: config.QUALITY_ALIGNMENT_API_KEY,
        minScore: config.QUALITY_ALIGNMENT_MIN,
        timeoutMs: config.QUALITY_CHECK_TIMEOUT_MS,
      }),
    );
  }
  if (config.QUALITY_MODERATION === "openai" && config.OPENAI_API_KEY) {
    checks.push(
      new ModerationCheck({
        apiKey: config.OPENAI_API_KEY,
        baseUrl: config.OPENAI_BASE_URL,
        model: config.QUALITY_MODERATION_MODEL,
        maxCategoryScore: config.QUALITY_MODERATION_MAX_SCORE,
        timeoutMs: config.QUALITY_CHECK_TIMEOUT_MS,
      }),
    );
  }
  return new QualityGate(checks, config.QUALITY_ON_ERROR, logger);
}
