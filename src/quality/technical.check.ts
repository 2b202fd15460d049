import sharp from "sharp";
import { acceptsContentType } from "../generation/output-store.service";
import { probeMp4, probePng, probeWav, type ContainerProbe } from "./media-probe";
import type { OutputCheck, QualityCheckResult, QualityInput } from "./quality.types";

export interface TechnicalCheckOptions {
  /**
   * An image whose every channel's standard deviation (0-255) is at or under this is one flat
   * colour: a blank canvas, or the black frame some providers return on a safety filter.
   * @defaultValue 2
   */
  minStdDev: number;
  /** A picture whose every channel's mean (0-255) is at or under this is a black frame. @defaultValue 8 */
  blackMaxMean: number;
  /** Allowed difference between asked and delivered width or height, as a fraction. @defaultValue 0.1 */
  sizeTolerance: number;
  /**
   * Allowed difference between asked and delivered duration, as a fraction, and never less than
   * a quarter second (frame and sample rounding). @defaultValue 0.1
   */
  durationTolerance: number;
  /** 16-bit audio whose loudest sample is under this fraction of full scale is silence. @defaultValue 0.001 */
  minAudioPeak: number;
}

export const TECHNICAL_DEFAULTS: TechnicalCheckOptions = {
  minStdDev: 2,
  blackMaxMean: 8,
  sizeTolerance: 0.1,
  durationTolerance: 0.1,
  minAudioPeak: 0.001,
};

/** Formats whose duration we read; others (MP3, Ogg, FLAC, WebM) skip the duration test. */
const DURATION_PROBES: Record<string, (data: Buffer) => ContainerProbe> = {
  "image/apng": probePng,
  "audio/wav": probeWav,
  "audio/mp4": probeMp4,
  "video/mp4": probeMp4,
};

interface Finding {
  test: "type" | "decodes" | "complete" | "size" | "content" | "duration";
  passed: boolean;
  reason?: string;
}

/**
 * The file itself, on its real bytes: of the media type asked for, decodable, complete, of
 * the size and duration asked for (when asked), and not blank, black or silent. Never calls
 * out, never throws: a file it cannot read fails.
 */
export class TechnicalCheck implements OutputCheck {
  readonly name = "technical";
  private readonly opts: TechnicalCheckOptions;

  constructor(opts: Partial<TechnicalCheckOptions> = {}) {
    this.opts = { ...TECHNICAL_DEFAULTS, ...opts };
  }

  async run(input: QualityInput): Promise<QualityCheckResult> {
    const findings: Finding[] = [];
    const measured: Record<string, unknown> = { contentType: input.contentType ?? null };
    const type = input.contentType;
    if (!type || !acceptsContentType(input.mediaType, type)) {
      findings.push({
        test: "type",
        passed: false,
        reason: `output is ${type ?? "unrecognised bytes"}, not ${input.mediaType.toLowerCase()} media`,
      });
      return this.result(findings, measured);
    }
    findings.push({ test: "type", passed: true });

    const probe = DURATION_PROBES[type] ?? (type === "image/png" ? probePng : undefined);
    const container = probe?.(input.data);
    if (container) {
      findings.push({ test: "complete", passed: container.complete, reason: container.problem });
    }
    if (type.startsWith("image/")) await this.picture(input, findings, measured);
    else if (type === "audio/wav" && container) this.silence(container, findings, measured);

    if (input.mediaType !== "IMAGE") {
      const seconds = container?.durationSeconds;
      measured.durationSeconds = seconds ?? null;
      if (seconds === undefined) {
        measured.durationUnchecked = `duration of ${type} is not read`;
      } else if (input.durationSeconds !== null) {
        const slack = Math.max(0.25, input.durationSeconds * this.opts.durationTolerance);
        const ok = Math.abs(seconds - input.durationSeconds) <= slack;
        findings.push({
          test: "duration",
          passed: ok,
          reason: ok
            ? undefined
            : `${round(seconds)} s long, ${input.durationSeconds} s asked (±${round(slack)} s)`,
        });
      } else {
        findings.push({ test: "duration", passed: seconds > 0, reason: "no playing time" });
      }
    }
    return this.result(findings, measured);
  }

  /**
   * Decoded in full by libvips (the first frame of an animation) to raw pixels once, measured
   * here: sharp's `stats()` runs four pipelines (sharpness, dominant colour, ...) that decode
   * the file again each time, ~20 ms for a 64x64 PNG, for numbers this check does not use.
   */
  private async picture(
    input: QualityInput,
    findings: Finding[],
    measured: Record<string, unknown>,
  ): Promise<void> {
    let pixels: PixelStats;
    try {
      // `truncated` turns a cut-off file into an error instead of grey padding.
      const { data, info } = await sharp(input.data, { failOn: "truncated", pages: 1 })
        .raw({ depth: "uchar" })
        .toBuffer({ resolveWithObject: true });
      pixels = pixelStats(data, info.width, info.height, info.channels);
    } catch (err) {
      const message = (err as Error).message;
      findings.push({ test: "decodes", passed: false, reason: `does not decode: ${message}` });
      return;
    }
    findings.push({ test: "decodes", passed: true });
    const { width, height } = pixels;
    Object.assign(measured, { width, height });
    if (input.width !== null || input.height !== null) {
      const off = (got: number, asked: number | null) =>
        asked !== null && Math.abs(got - asked) > asked * this.opts.sizeTolerance;
      const wrong = off(width, input.width) || off(height, input.height);
      findings.push({
        test: "size",
        passed: !wrong,
        reason: wrong
          ? `${width}x${height}, ${input.width ?? "any"}x${input.height ?? "any"} asked`
          : undefined,
      });
    }
    const stdDev = Math.max(...pixels.colour.map((c) => c.stdev));
    const mean = Math.max(...pixels.colour.map((c) => c.mean));
    Object.assign(measured, {
      stdDev: round(stdDev),
      mean: round(mean),
      entropy: round(pixels.entropy),
    });
    const black = mean <= this.opts.blackMaxMean;
    const flat = stdDev <= this.opts.minStdDev;
    findings.push({
      test: "content",
      passed: !black && !flat,
      reason: black
        ? "a black frame"
        : flat
          ? `a single colour (channel std-dev ${round(stdDev)} ≤ ${this.opts.minStdDev})`
          : undefined,
    });
  }

  private silence(probe: ContainerProbe, findings: Finding[], measured: Record<string, unknown>) {
    const peak = (probe as { peak?: number }).peak;
    if (peak === undefined) return;
    measured.peak = round(peak);
    const silent = peak < this.opts.minAudioPeak;
    findings.push({ test: "content", passed: !silent, reason: silent ? "silence" : undefined });
  }

  private result(findings: Finding[], measured: Record<string, unknown>): QualityCheckResult {
    const failed = findings.filter((f) => !f.passed);
    return {
      name: this.name,
      passed: failed.length === 0,
      score: round(1 - failed.length / findings.length),
      details: {
        ...measured,
        tests: Object.fromEntries(findings.map((f) => [f.test, f.passed])),
        ...(failed.length
          ? { reason: failed.map((f) => `${f.test}: ${f.reason}`).join("; ") }
          : {}),
      },
    };
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

interface PixelStats {
  width: number;
  height: number;
  /** Mean and standard deviation (0-255) of each colour channel; alpha is left out. */
  colour: Array<{ mean: number; stdev: number }>;
  /** Shannon entropy (bits) of the histogram of grey levels (Rec. 601 luma). */
  entropy: number;
}

/** Interleaved 8-bit pixels with 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA) channels. */
export function pixelStats(
  data: Uint8Array,
  width: number,
  height: number,
  channels: number,
): PixelStats {
  // A transparent picture's alpha says nothing about its content.
  const colours = channels === 2 || channels === 4 ? channels - 1 : channels;
  const sum = new Float64Array(colours);
  const squares = new Float64Array(colours);
  const grey = new Uint32Array(256);
  const n = width * height;
  for (let p = 0, i = 0; p < n; p++, i += channels) {
    for (let c = 0; c < colours; c++) {
      const v = data[i + c]!;
      sum[c]! += v;
      squares[c]! += v * v;
    }
    const luma =
      colours >= 3
        ? Math.round(0.299 * data[i]! + 0.587 * data[i + 1]! + 0.114 * data[i + 2]!)
        : data[i]!;
    grey[luma]!++;
  }
  const colour = Array.from({ length: colours }, (_, c) => {
    const mean = n > 0 ? sum[c]! / n : 0;
    // Sample standard deviation, as libvips reports it.
    const variance = n > 1 ? (squares[c]! - n * mean * mean) / (n - 1) : 0;
    return { mean, stdev: Math.sqrt(Math.max(variance, 0)) };
  });
  let entropy = 0;
  for (const count of grey) {
    if (count === 0) continue;
    const share = count / n;
    entropy -= share * Math.log2(share);
  }
  return { width, height, colour, entropy };
}
