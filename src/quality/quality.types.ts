import type { MediaType } from "../entities";

/** One check's verdict on one output, as stored and shown (`QualityCheck` in GraphQL). */
export interface QualityCheckResult {
  name: string;
  passed: boolean;
  /** 0..1, higher is better; a skipped check scores 1 and does not count in the report's score. */
  score: number;
  /** What was measured and, when it failed, `reason`; `skipped: true` when it did not run. */
  details: Record<string, unknown>;
}

/** The verdict on all outputs of an attempt (`QualityReport` in GraphQL). */
export interface QualityReport {
  passed: boolean;
  /** Mean score of the checks that ran. */
  score: number;
  checks: QualityCheckResult[];
}

/** One output's bytes, with what the request asked for. */
export interface QualityInput {
  data: Buffer;
  /** The type its bytes show (magic numbers), undefined when unrecognised. */
  contentType: string | undefined;
  mediaType: MediaType;
  prompt: string;
  width: number | null;
  height: number | null;
  durationSeconds: number | null;
}

/**
 * One check of the pipeline. `run` may throw when a service it needs is unreachable or
 * answers nonsense; the gate then applies its error policy (skip or fail). A check that does
 * not apply to an output (moderation of audio) returns a skipped result.
 */
export interface OutputCheck {
  readonly name: string;
  run(input: QualityInput): Promise<QualityCheckResult>;
}

export function skipped(name: string, reason: string): QualityCheckResult {
  return { name, passed: true, score: 1, details: { skipped: true, reason } };
}
