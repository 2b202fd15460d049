import type { MediaType } from "../../entities";
import {
  renderAudio,
  renderImage,
  renderSilence,
  renderSolid,
  renderVideo,
  type RenderedMedia,
} from "./sim-render";

/**
 * The bad outputs real providers return now and then, on demand, so the quality gate and the
 * fallback it triggers can be shown and tested. Each is a prompt directive; the job still
 * "succeeds" at the provider, as the real cases do:
 *
 * | directive           | output                                                            |
 * | ------------------- | ----------------------------------------------------------------- |
 * | `[sim:black]`       | an all-black frame (what several providers return on a safety filter) |
 * | `[sim:blank]`       | one flat grey colour; for audio, silence                          |
 * | `[sim:truncated]`   | the file cut off at 60% of its bytes                              |
 * | `[sim:wrong-size]`  | half the width and height asked for                               |
 * | `[sim:wrong-type]`  | media of another kind (a WAV for pictures, a PNG for audio), labelled as what was asked |
 * | `[sim:short-audio]` | a quarter of the duration asked for (audio and video)             |
 */
export const SIM_DEFECTS = [
  "black",
  "blank",
  "truncated",
  "wrong-size",
  "wrong-type",
  "short-audio",
] as const;

export type SimDefect = (typeof SIM_DEFECTS)[number];

const DEFECT_DIRECTIVE = new RegExp(`\\[sim:(${SIM_DEFECTS.join("|")})\\]`);

export function simDefect(prompt: string): SimDefect | undefined {
  return DEFECT_DIRECTIVE.exec(prompt)?.[1] as SimDefect | undefined;
}

/** What a simulated job renders, with its sizes already defaulted by the caller. */
export interface SimRenderRequest {
  mediaType: MediaType;
  prompt: string;
  seed: number;
  width: number;
  height: number;
  durationSeconds: number;
  /** False renders the prompt well whatever its directives. @defaultValue true */
  defects?: boolean;
}

/**
 * The simulated provider's output for a job, shared by the in-process adapter and the
 * `gengate sim-provider` server so both honour the same directives.
 */
export function renderSimulated(req: SimRenderRequest): RenderedMedia {
  const defect = req.defects === false ? undefined : simDefect(req.prompt);
  switch (defect) {
    case undefined:
      return renderPlain(req);
    case "black":
    case "blank": {
      if (req.mediaType === "AUDIO") return renderSilence({ durationSeconds: req.durationSeconds });
      return renderSolid({
        width: req.width,
        height: req.height,
        rgb: defect === "black" ? [0, 0, 0] : [128, 128, 128],
        durationSeconds: req.mediaType === "VIDEO" ? req.durationSeconds : undefined,
      });
    }
    case "truncated": {
      const media = renderPlain(req);
      return { ...media, data: media.data.subarray(0, Math.floor(media.data.length * 0.6)) };
    }
    case "wrong-size":
      return renderPlain({
        ...req,
        width: Math.max(1, Math.floor(req.width / 2)),
        height: Math.max(1, Math.floor(req.height / 2)),
      });
    case "wrong-type": {
      const asked = renderPlain(req);
      const other =
        req.mediaType === "AUDIO"
          ? renderImage({ prompt: req.prompt, seed: req.seed, width: 64, height: 64 })
          : renderAudio({ prompt: req.prompt, seed: req.seed, durationSeconds: 1 });
      // Labelled as what was asked for: only the bytes tell.
      return { ...asked, data: other.data };
    }
    case "short-audio":
      return renderPlain({ ...req, durationSeconds: req.durationSeconds / 4 });
  }
}

function renderPlain(req: SimRenderRequest): RenderedMedia {
  const { prompt, seed, width, height, durationSeconds } = req;
  switch (req.mediaType) {
    case "IMAGE":
      return renderImage({ prompt, seed, width, height });
    case "VIDEO":
      return renderVideo({ prompt, seed, width, height, durationSeconds });
    case "AUDIO":
      return renderAudio({ prompt, seed, durationSeconds });
  }
}
