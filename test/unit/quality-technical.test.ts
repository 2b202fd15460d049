import sharp from "sharp";
import { sniffContentType } from "../../src/generation/output-store.service";
import { probeMp4, probePng, probeWav } from "../../src/quality/media-probe";
import { pixelStats, TechnicalCheck } from "../../src/quality/technical.check";
import type { QualityInput } from "../../src/quality/quality.types";
import {
  renderAudio,
  renderImage,
  renderSilence,
  renderVideo,
} from "../../src/providers/simulated/sim-render";
import { renderSimulated, type SimRenderRequest } from "../../src/providers/simulated/sim-defects";
import type { MediaType } from "../../src/entities";

const check = new TechnicalCheck();

function input(
  data: Buffer,
  mediaType: MediaType,
  asked: Partial<Pick<QualityInput, "width" | "height" | "durationSeconds">> = {},
): QualityInput {
  return {
    data,
    contentType: sniffContentType(data),
    mediaType,
    prompt: "a red fox in the snow",
    width: asked.width ?? null,
    height: asked.height ?? null,
    durationSeconds: asked.durationSeconds ?? null,
  };
}

const png = (w: number, h: number, background: string) =>
  sharp({ create: { width: w, height: h, channels: 3, background } })
    .png()
    .toBuffer();

describe("the technical check on real files", () => {
  it("passes a good PNG of the size asked for", async () => {
    const good = renderImage({ prompt: "a red fox", seed: 7, width: 96, height: 64 }).data;
    const result = await check.run(input(good, "IMAGE", { width: 96, height: 64 }));
    expect(result).toMatchObject({ name: "technical", passed: true, score: 1 });
    expect(result.details).toMatchObject({ contentType: "image/png", width: 96, height: 64 });
    expect(result.details.stdDev as number).toBeGreaterThan(2);
  });

  it("passes a good JPEG made by another encoder", async () => {
    const jpeg = await sharp(renderImage({ prompt: "x", seed: 1, width: 80, height: 80 }).data)
      .jpeg()
      .toBuffer();
    expect((await check.run(input(jpeg, "IMAGE", { width: 80, height: 80 }))).passed).toBe(true);
  });

  it("rejects a blank (single-colour) PNG", async () => {
    const result = await check.run(input(await png(64, 64, "#7f7f7f"), "IMAGE"));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toMatch(/content: a single colour/);
  });

  it("rejects an all-black PNG as a black frame", async () => {
    const result = await check.run(input(await png(64, 64, "#000000"), "IMAGE"));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toMatch(/content: a black frame/);
  });

  it("rejects a truncated PNG", async () => {
    const good = renderImage({ prompt: "a red fox", seed: 7, width: 96, height: 64 }).data;
    const result = await check.run(input(good.subarray(0, good.length - 200), "IMAGE"));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toMatch(/complete: IDAT chunk cut off/);
    expect(result.details.reason).toMatch(/decodes: does not decode/);
  });

  it("rejects a truncated JPEG", async () => {
    const jpeg = await sharp(renderImage({ prompt: "x", seed: 1, width: 128, height: 128 }).data)
      .jpeg()
      .toBuffer();
    const result = await check.run(input(jpeg.subarray(0, jpeg.length / 2), "IMAGE"));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toMatch(/decodes/);
  });

  it("rejects an image of the wrong size, and accepts one within the tolerance", async () => {
    const small = renderImage({ prompt: "a red fox", seed: 7, width: 48, height: 32 }).data;
    const wrong = await check.run(input(small, "IMAGE", { width: 96, height: 64 }));
    expect(wrong.passed).toBe(false);
    expect(wrong.details.reason).toBe("size: 48x32, 96x64 asked");
    const snapped = renderImage({ prompt: "a red fox", seed: 7, width: 1024, height: 64 }).data;
    expect((await check.run(input(snapped, "IMAGE", { width: 1000, height: 64 }))).passed).toBe(
      true,
    );
  });

  it("rejects a file of the wrong content type", async () => {
    const wav = renderAudio({ prompt: "a tune", seed: 1, durationSeconds: 1 }).data;
    const asImage = await check.run(input(wav, "IMAGE"));
    expect(asImage.passed).toBe(false);
    expect(asImage.details.reason).toBe("type: output is audio/wav, not image media");
    const html = Buffer.from("<html>quota exceeded</html>");
    expect((await check.run(input(html, "IMAGE"))).details.reason).toBe(
      "type: output is unrecognised bytes, not image media",
    );
    const image = renderImage({ prompt: "x", seed: 1, width: 8, height: 8 }).data;
    expect((await check.run(input(image, "AUDIO"))).passed).toBe(false);
  });

  it("passes audio of the duration asked for and rejects a short audio file", async () => {
    const full = renderAudio({ prompt: "a tune", seed: 1, durationSeconds: 4 }).data;
    const ok = await check.run(input(full, "AUDIO", { durationSeconds: 4 }));
    expect(ok).toMatchObject({ passed: true, details: { durationSeconds: 4 } });
    const short = renderAudio({ prompt: "a tune", seed: 1, durationSeconds: 1 }).data;
    const result = await check.run(input(short, "AUDIO", { durationSeconds: 4 }));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toBe("duration: 1 s long, 4 s asked (±0.4 s)");
  });

  it("rejects silent audio and truncated audio", async () => {
    const silent = renderSilence({ durationSeconds: 2 }).data;
    expect((await check.run(input(silent, "AUDIO"))).details.reason).toBe("content: silence");
    const full = renderAudio({ prompt: "a tune", seed: 1, durationSeconds: 2 }).data;
    const cut = await check.run(input(full.subarray(0, full.length / 2), "AUDIO"));
    expect(cut.passed).toBe(false);
    expect(cut.details.reason).toMatch(/complete: data chunk announces 88200 bytes, 44078 present/);
  });

  it("checks an APNG video's frames, size and playing time", async () => {
    const video = renderVideo({
      prompt: "waves",
      seed: 3,
      width: 32,
      height: 32,
      durationSeconds: 2,
    });
    const asked = { width: 32, height: 32, durationSeconds: 2 };
    expect(await check.run(input(video.data, "VIDEO", asked))).toMatchObject({
      passed: true,
      details: { contentType: "image/apng", durationSeconds: 2 },
    });
    const cut = await check.run(
      input(video.data.subarray(0, video.data.length - 100), "VIDEO", asked),
    );
    expect(cut.details.reason).toMatch(/complete: fdAT chunk cut off/);
  });
});

describe("the simulated provider's bad outputs fail the technical check", () => {
  const base = (mediaType: MediaType, prompt: string): SimRenderRequest => ({
    mediaType,
    prompt,
    seed: 11,
    width: 64,
    height: 48,
    durationSeconds: mediaType === "AUDIO" ? 4 : 2,
  });
  const asked = (r: SimRenderRequest) => ({
    width: r.mediaType === "AUDIO" ? null : r.width,
    height: r.mediaType === "AUDIO" ? null : r.height,
    durationSeconds: r.mediaType === "IMAGE" ? null : r.durationSeconds,
  });

  it.each([
    ["IMAGE", "[sim:black]", /content: a black frame/],
    ["IMAGE", "[sim:blank]", /content: a single colour/],
    ["IMAGE", "[sim:truncated]", /complete: IDAT chunk cut off/],
    ["IMAGE", "[sim:wrong-size]", /size: 32x24, 64x48 asked/],
    ["IMAGE", "[sim:wrong-type]", /type: output is audio\/wav/],
    ["VIDEO", "[sim:black]", /content: a black frame/],
    ["VIDEO", "[sim:short-audio]", /duration: 0.5 s long, 2 s asked/],
    ["VIDEO", "[sim:truncated]", /complete: .* cut off/],
    ["AUDIO", "[sim:blank]", /content: silence/],
    ["AUDIO", "[sim:short-audio]", /duration: 1 s long, 4 s asked/],
    ["AUDIO", "[sim:truncated]", /complete: data chunk announces/],
    ["AUDIO", "[sim:wrong-type]", /type: output is image\/png, not audio media/],
  ] as const)("%s %s", async (mediaType, directive, reason) => {
    const req = base(mediaType, `a red fox ${directive}`);
    const media = renderSimulated(req);
    const result = await check.run(input(media.data, mediaType, asked(req)));
    expect(result.passed).toBe(false);
    expect(result.details.reason).toMatch(reason);
  });

  it.each(["IMAGE", "VIDEO", "AUDIO"] as const)("a plain %s passes", async (mediaType) => {
    const req = base(mediaType, "a red fox");
    const result = await check.run(input(renderSimulated(req).data, mediaType, asked(req)));
    expect(result).toMatchObject({ passed: true, score: 1 });
  });
});

describe("container probes", () => {
  it("reads a minimal MP4's duration from moov/mvhd and sees a cut-off box", () => {
    const box = (type: string, body: Buffer) => {
      const head = Buffer.alloc(8);
      head.writeUInt32BE(8 + body.length, 0);
      head.write(type, 4, "latin1");
      return Buffer.concat([head, body]);
    };
    const mvhd = Buffer.alloc(100);
    mvhd.writeUInt32BE(1000, 12); // timescale (version 0: after version/flags, created, modified)
    mvhd.writeUInt32BE(6500, 16); // duration
    const mp4 = Buffer.concat([
      box("ftyp", Buffer.from("isom\0\0\0\0isom", "latin1")),
      box("moov", box("mvhd", mvhd)),
      box("mdat", Buffer.alloc(64)),
    ]);
    expect(sniffContentType(mp4)).toBe("video/mp4");
    expect(probeMp4(mp4)).toEqual({ complete: true, durationSeconds: 6.5 });
    expect(probeMp4(mp4.subarray(0, mp4.length - 10))).toMatchObject({
      complete: false,
      problem: "mdat box cut off",
    });
  });

  it("tells a still PNG from an unfinished one", () => {
    const still = renderImage({ prompt: "x", seed: 1, width: 8, height: 8 }).data;
    expect(probePng(still)).toEqual({ complete: true });
    expect(probePng(still.subarray(0, still.length - 12))).toMatchObject({ complete: false });
    expect(probeWav(Buffer.from("nope"))).toMatchObject({ complete: false });
  });
});

describe("pixel statistics", () => {
  it("gives libvips' channel means and standard deviations for a decoded picture", async () => {
    const noise = Buffer.from(Array.from({ length: 37 * 23 * 4 }, (_, i) => (i * 7919) % 251));
    const png = await sharp(noise, { raw: { width: 37, height: 23, channels: 4 } })
      .png()
      .toBuffer();
    const reference = await sharp(png).stats();
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const mine = pixelStats(data, info.width, info.height, info.channels);
    expect(mine).toMatchObject({ width: 37, height: 23 });
    // Alpha is left out; the colour channels match libvips to rounding.
    expect(mine.colour).toHaveLength(3);
    mine.colour.forEach((c, i) => {
      expect(c.mean).toBeCloseTo(reference.channels[i]!.mean, 6);
      expect(c.stdev).toBeCloseTo(reference.channels[i]!.stdev, 6);
    });
  });

  it("measures a flat picture as flat, and half-and-half grey as one bit of entropy", () => {
    const flat = pixelStats(Buffer.alloc(8 * 8 * 3, 200), 8, 8, 3);
    expect(flat.colour).toEqual([
      { mean: 200, stdev: 0 },
      { mean: 200, stdev: 0 },
      { mean: 200, stdev: 0 },
    ]);
    expect(flat.entropy).toBe(0);
    // Grey and alpha: two channels, one of colour.
    const halves = Buffer.from(
      Array.from({ length: 4 * 2 }, (_, i) => (i % 2 ? 255 : i < 4 ? 0 : 100)),
    );
    const split = pixelStats(halves, 2, 2, 2);
    expect(split.colour).toHaveLength(1);
    expect(split.colour[0]!.mean).toBe(50);
    expect(split.entropy).toBeCloseTo(1, 10);
  });

  it("is empty, not NaN, for a picture without pixels", () => {
    expect(pixelStats(Buffer.alloc(0), 0, 0, 3)).toEqual({
      width: 0,
      height: 0,
      colour: [
        { mean: 0, stdev: 0 },
        { mean: 0, stdev: 0 },
        { mean: 0, stdev: 0 },
      ],
      entropy: 0,
    });
  });
});
