import sharp from "sharp";
import type { QualityInput } from "./quality.types";

/** Longest side sent to a scorer or moderation model: enough to judge, small to send. */
const MAX_SIDE = 768;

/**
 * The output as one still PNG data URL (the first frame of an animation), or undefined for
 * what has no picture to show (audio) or that libvips cannot read (MP4, WebM: no frame is
 * extracted without a video decoder).
 */
export async function stillImageDataUrl(input: QualityInput): Promise<string | undefined> {
  if (!input.contentType?.startsWith("image/")) return undefined;
  const png = await sharp(input.data, { pages: 1 })
    .resize(MAX_SIDE, MAX_SIDE, { fit: "inside", withoutEnlargement: true })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}
