import {
  skipped,
  type OutputCheck,
  type QualityCheckResult,
  type QualityInput,
} from "./quality.types";
import { stillImageDataUrl } from "./still-image";

export interface AlignmentCheckOptions {
  /** The scorer's endpoint (`QUALITY_ALIGNMENT_URL`). */
  url: string;
  /** Sent as `Authorization: Bearer …` when set. */
  apiKey?: string;
  /** Lowest score accepted (`QUALITY_ALIGNMENT_MIN`). */
  minScore: number;
  /** @defaultValue 5000 */
  timeoutMs?: number;
}

/**
 * Text-image alignment (CLIP-style) through an HTTP scorer, so the model runs wherever it
 * fits (a GPU box, a hosted endpoint) and gengate stays model-free. The protocol:
 *
 * ```
 * POST {QUALITY_ALIGNMENT_URL}
 * Content-Type: application/json
 * Authorization: Bearer {QUALITY_ALIGNMENT_API_KEY}     (when set)
 * {"prompt": "a red fox in snow", "image": "data:image/png;base64,…"}
 *
 * 200 {"score": 0.31, "model": "ViT-L-14"}             (model optional, shown in details)
 * ```
 *
 * `score` is whatever similarity the scorer computes (raw CLIP cosine similarity sits around
 * 0.2-0.35 for matching pairs); the check passes at or above `minScore`. Any other answer (a
 * non-2xx status, no numeric score, a timeout) is an error, which the gate's policy turns into
 * a skipped or a failed check. Outputs without a picture (audio, MP4) are skipped.
 */
export class AlignmentCheck implements OutputCheck {
  readonly name = "alignment";

  constructor(private readonly opts: AlignmentCheckOptions) {}

  async run(input: QualityInput): Promise<QualityCheckResult> {
    const image = await stillImageDataUrl(input);
    if (!image) return skipped(this.name, `no still image in ${input.contentType ?? "the output"}`);
    const res = await fetch(this.opts.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {}),
      },
      body: JSON.stringify({ prompt: input.prompt, image }),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 5000),
    });
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new Error(`alignment scorer answered HTTP ${res.status}`);
    }
    const body = (await res.json()) as { score?: unknown; model?: unknown };
    if (typeof body.score !== "number" || !Number.isFinite(body.score)) {
      throw new Error("alignment scorer answered without a numeric score");
    }
    const passed = body.score >= this.opts.minScore;
    return {
      name: this.name,
      passed,
      score: Math.max(0, Math.min(1, body.score)),
      details: {
        similarity: body.score,
        min: this.opts.minScore,
        ...(typeof body.model === "string" ? { model: body.model } : {}),
        ...(passed ? {} : { reason: `alignment ${body.score} < ${this.opts.minScore}` }),
      },
    };
  }
}
