import {
  skipped,
  type OutputCheck,
  type QualityCheckResult,
  type QualityInput,
} from "./quality.types";
import { stillImageDataUrl } from "./still-image";

export interface ModerationCheckOptions {
  apiKey: string;
  /** @defaultValue https://api.openai.com/v1 (OPENAI_BASE_URL) */
  baseUrl?: string;
  /** @defaultValue omni-moderation-latest */
  model?: string;
  /**
   * A category score at or above this fails the output even when OpenAI does not flag it;
   * unset leaves the verdict to OpenAI's `flagged`.
   */
  maxCategoryScore?: number;
  /** @defaultValue 10000 */
  timeoutMs?: number;
}

interface ModerationResponse {
  model?: string;
  results?: Array<{
    flagged: boolean;
    categories?: Record<string, boolean>;
    category_scores?: Record<string, number>;
  }>;
}

/**
 * Safety of the output through OpenAI's moderation endpoint (`POST /v1/moderations`): the
 * picture as a data URL with the prompt as text, one multi-modal input. Fails when OpenAI
 * flags it, or a category scores at or above `maxCategoryScore`; the score is one minus the
 * highest category score. Audio and outputs without a still picture are skipped (the endpoint
 * reads text and images only). Errors follow the gate's policy.
 */
export class ModerationCheck implements OutputCheck {
  readonly name = "safety";

  constructor(private readonly opts: ModerationCheckOptions) {}

  async run(input: QualityInput): Promise<QualityCheckResult> {
    const image = await stillImageDataUrl(input);
    if (!image) return skipped(this.name, `no still image in ${input.contentType ?? "the output"}`);
    const base = (this.opts.baseUrl ?? "https://api.openai.com/v1").replace(/\/+$/, "");
    const res = await fetch(`${base}/moderations`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Bearer ${this.opts.apiKey}`,
      },
      body: JSON.stringify({
        model: this.opts.model ?? "omni-moderation-latest",
        input: [
          { type: "text", text: input.prompt },
          { type: "image_url", image_url: { url: image } },
        ],
      }),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 10_000),
    });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`moderation answered HTTP ${res.status}`);
    }
    const body = (await res.json()) as ModerationResponse;
    const result = body.results?.[0];
    if (!result || typeof result.flagged !== "boolean") {
      throw new Error("moderation answered without a result");
    }
    const scores = result.category_scores ?? {};
    const [topCategory, topScore] = Object.entries(scores).reduce<[string | null, number]>(
      (best, [k, v]) => (typeof v === "number" && v > best[1] ? [k, v] : best),
      [null, 0],
    );
    const flaggedBy = Object.entries(result.categories ?? {})
      .filter(([, on]) => on)
      .map(([k]) => k);
    const overLimit =
      this.opts.maxCategoryScore !== undefined && topScore >= this.opts.maxCategoryScore;
    const passed = !result.flagged && !overLimit;
    return {
      name: this.name,
      passed,
      score: Math.round((1 - topScore) * 1000) / 1000,
      details: {
        flagged: result.flagged,
        categories: flaggedBy,
        topCategory,
        topScore,
        ...(body.model ? { model: body.model } : {}),
        ...(passed
          ? {}
          : {
              reason: result.flagged
                ? `flagged by moderation (${flaggedBy.join(", ") || topCategory})`
                : `${topCategory} scored ${topScore} ≥ ${this.opts.maxCategoryScore}`,
            }),
      },
    };
  }
}
