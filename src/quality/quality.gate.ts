import type { Logger } from "../common/logger";
import type { MediaType } from "../entities";
import type { FetchedOutput } from "../generation/output-store.service";
import { ProviderError } from "../providers";
import type { OutputCheck, QualityCheckResult, QualityReport } from "./quality.types";

/** What becomes of a check whose service errs (unreachable, timeout, nonsense answer). */
export type QualityErrorPolicy = "skip" | "fail";

export const QUALITY_FAILED = "QUALITY_FAILED";

/**
 * An output the gate refused. Retryable: another provider (or model) of the fallback chain may
 * well deliver a good one. Carries the report, which is stored on the failed attempt.
 */
export class QualityFailedError extends ProviderError {
  constructor(readonly report: QualityReport) {
    const reasons = report.checks
      .filter((c) => !c.passed)
      .map((c) => `${c.name}: ${String(c.details.reason ?? "failed")}`);
    super(`output rejected by the quality gate (${reasons.join("; ")})`, QUALITY_FAILED, true);
    this.name = "QualityFailedError";
  }
}

/** What the request asked for, which the outputs are held to. */
export interface QualityRequest {
  mediaType: MediaType;
  prompt: string;
  width: number | null;
  height: number | null;
  durationSeconds: number | null;
}

/**
 * Runs the pipeline of checks over every output of an attempt, in order: the technical check
 * first, and the paid ones (alignment, safety) only on a file that passed it. An output's
 * checks stop at its first failure. Checks of the second and later outputs are named
 * `technical#2`, …
 */
export class QualityGate {
  constructor(
    private readonly checks: readonly OutputCheck[],
    private readonly onError: QualityErrorPolicy,
    private readonly logger: Logger,
  ) {}

  async inspect(outputs: FetchedOutput[], request: QualityRequest): Promise<QualityReport> {
    const results: QualityCheckResult[] = [];
    for (const [i, output] of outputs.entries()) {
      const input = { ...request, data: output.data, contentType: output.contentType };
      for (const check of this.checks) {
        const result = await this.runOne(check, input);
        results.push(i === 0 ? result : { ...result, name: `${result.name}#${i + 1}` });
        if (!result.passed) break;
      }
    }
    if (outputs.length === 0) {
      results.push({
        name: "technical",
        passed: false,
        score: 0,
        details: { reason: "the provider returned no output" },
      });
    }
    const counted = results.filter((r) => r.details.skipped !== true);
    const score = counted.length
      ? counted.reduce((sum, r) => sum + r.score, 0) / counted.length
      : 1;
    return {
      passed: results.every((r) => r.passed),
      score: Math.round(score * 1000) / 1000,
      checks: results,
    };
  }

  private async runOne(
    check: OutputCheck,
    input: Parameters<OutputCheck["run"]>[0],
  ): Promise<QualityCheckResult> {
    try {
      return await check.run(input);
    } catch (err) {
      const message = (err as Error).message;
      this.logger.warn({ err, check: check.name }, "quality check could not run");
      return this.onError === "skip"
        ? { name: check.name, passed: true, score: 1, details: { skipped: true, error: message } }
        : {
            name: check.name,
            passed: false,
            score: 0,
            details: { error: message, reason: message },
          };
    }
  }
}
