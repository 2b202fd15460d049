import { inflateSync } from "node:zlib";
import { PNG } from "pngjs";
import { renderAudio, renderImage, renderVideo } from "../../src/providers/simulated/sim-render";

type SimRender = typeof import("../../src/providers/simulated/sim-render");

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

// An independent CRC, so the check does not share code with the implementation under test.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

interface Chunk {
  type: string;
  body: Buffer;
  crcValid: boolean;
}

function parseChunks(file: Buffer): Chunk[] {
  expect(file.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  const chunks: Chunk[] = [];
  let offset = 8;
  while (offset < file.length) {
    const length = file.readUInt32BE(offset);
    const typeAndBody = file.subarray(offset + 4, offset + 8 + length);
    chunks.push({
      type: typeAndBody.subarray(0, 4).toString("latin1"),
      body: typeAndBody.subarray(4),
      crcValid: crc32(typeAndBody) === file.readUInt32BE(offset + 8 + length),
    });
    offset += 12 + length;
  }
  expect(offset).toBe(file.length);
  return chunks;
}

function makeChunk(type: string, body: Buffer): Buffer {
  const typeAndBody = Buffer.concat([Buffer.from(type, "latin1"), body]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndBody));
  return Buffer.concat([length, typeAndBody, crc]);
}

/** Re-wraps one animation frame as a standalone PNG so pngjs can decode it. */
function decodeFrame(chunks: Chunk[], frameIndex: number): PNG {
  const ihdr = chunks.find((c) => c.type === "IHDR");
  if (!ihdr) throw new Error("no IHDR");
  const data =
    frameIndex === 0
      ? Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.body))
      : chunks.filter((c) => c.type === "fdAT")[frameIndex - 1]?.body.subarray(4);
  if (!data) throw new Error(`no data for frame ${frameIndex}`);
  return PNG.sync.read(
    Buffer.concat([
      PNG_SIGNATURE,
      makeChunk("IHDR", ihdr.body),
      makeChunk("IDAT", data),
      makeChunk("IEND", Buffer.alloc(0)),
    ]),
  );
}

function meanAbsDifference(a: Buffer, b: Buffer): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] ?? 0) - (b[i] ?? 0));
  return sum / a.length;
}

function pixelAt(png: PNG, x: number, y: number): number[] {
  const i = (y * png.width + x) * 4;
  return [...png.data.subarray(i, i + 4)];
}

interface AnimationInfo {
  frameCount: number;
  plays: number;
  sequences: number[];
  delays: { numerator: number; denominator: number }[];
  order: string[];
}

function describeAnimation(chunks: Chunk[]): AnimationInfo {
  const actl = chunks.find((c) => c.type === "acTL");
  if (!actl) throw new Error("no acTL");
  const sequences: number[] = [];
  const delays: { numerator: number; denominator: number }[] = [];
  for (const c of chunks) {
    if (c.type === "fcTL" || c.type === "fdAT") sequences.push(c.body.readUInt32BE(0));
    if (c.type === "fcTL") {
      delays.push({ numerator: c.body.readUInt16BE(20), denominator: c.body.readUInt16BE(22) });
    }
  }
  return {
    frameCount: actl.body.readUInt32BE(0),
    plays: actl.body.readUInt32BE(4),
    sequences,
    delays,
    order: chunks.map((c) => c.type),
  };
}

const base = { prompt: "a lighthouse at dusk", seed: 1234 };

describe("renderImage", () => {
  it.each([
    [64, 64],
    [300, 200],
    [1, 1],
    [17, 333],
  ])("returns a %ix%i PNG that pngjs decodes to the requested size", (width, height) => {
    const media = renderImage({ ...base, width, height });
    expect(media.contentType).toBe("image/png");
    expect(media).toMatchObject({ width, height });
    const png = PNG.sync.read(media.data);
    expect(png.width).toBe(width);
    expect(png.height).toBe(height);
  });

  it("renders the same PNG bytes for the same prompt and seed", () => {
    const a = renderImage({ ...base, width: 128, height: 96 });
    const b = renderImage({ ...base, width: 128, height: 96 });
    expect(a.data.equals(b.data)).toBe(true);
  });

  it("renders a visibly different picture for a different seed", () => {
    const a = PNG.sync.read(renderImage({ ...base, width: 128, height: 128 }).data);
    const b = PNG.sync.read(renderImage({ ...base, seed: 1235, width: 128, height: 128 }).data);
    expect(meanAbsDifference(a.data, b.data)).toBeGreaterThan(10);
  });

  it("renders a visibly different picture for a different prompt", () => {
    const a = PNG.sync.read(renderImage({ ...base, width: 128, height: 128 }).data);
    const b = PNG.sync.read(
      renderImage({ ...base, prompt: "a lighthouse at dawn", width: 128, height: 128 }).data,
    );
    expect(meanAbsDifference(a.data, b.data)).toBeGreaterThan(10);
  });

  it("is not a flat fill", () => {
    const png = PNG.sync.read(renderImage({ ...base, width: 128, height: 128 }).data);
    const distinct = new Set<number>();
    for (let i = 0; i < png.data.length; i += 4) distinct.add(png.data.readUInt32BE(i));
    expect(distinct.size).toBeGreaterThan(500);
  });

  it("paints the bottom band in a colour that depends on the seed only", () => {
    const bottom = (prompt: string, seed: number): number[] => {
      const png = PNG.sync.read(renderImage({ prompt, seed, width: 100, height: 100 }).data);
      return pixelAt(png, 50, 99);
    };
    expect(bottom("a cat", 7)).toEqual(bottom("a dog", 7));
    expect(bottom("a cat", 7)).not.toEqual(bottom("a cat", 8));
  });

  it.each([
    ["zero width", { width: 0, height: 64 }],
    ["negative height", { width: 64, height: -1 }],
    ["fractional width", { width: 64.5, height: 64 }],
    ["width above 4096", { width: 4097, height: 64 }],
    ["NaN height", { width: 64, height: Number.NaN }],
  ])("throws RangeError for %s", (_label, size) => {
    expect(() => renderImage({ ...base, ...size })).toThrow(RangeError);
  });

  it("throws RangeError for a non-finite seed", () => {
    expect(() =>
      renderImage({ ...base, seed: Number.POSITIVE_INFINITY, width: 8, height: 8 }),
    ).toThrow(RangeError);
  });
});

describe("renderAudio", () => {
  function header(data: Buffer) {
    return {
      riff: data.toString("latin1", 0, 4),
      riffSize: data.readUInt32LE(4),
      wave: data.toString("latin1", 8, 12),
      fmt: data.toString("latin1", 12, 16),
      fmtSize: data.readUInt32LE(16),
      format: data.readUInt16LE(20),
      channels: data.readUInt16LE(22),
      sampleRate: data.readUInt32LE(24),
      byteRate: data.readUInt32LE(28),
      blockAlign: data.readUInt16LE(32),
      bitsPerSample: data.readUInt16LE(34),
      dataTag: data.toString("latin1", 36, 40),
      dataSize: data.readUInt32LE(40),
    };
  }

  function samples(data: Buffer): number[] {
    const out: number[] = [];
    for (let i = 44; i < data.length; i += 2) out.push(data.readInt16LE(i));
    return out;
  }

  it("writes a RIFF/WAVE header for 16-bit mono PCM at 22050 Hz by default", () => {
    const media = renderAudio({ ...base, durationSeconds: 1 });
    expect(media.contentType).toBe("audio/wav");
    expect(header(media.data)).toEqual({
      riff: "RIFF",
      riffSize: media.data.length - 8,
      wave: "WAVE",
      fmt: "fmt ",
      fmtSize: 16,
      format: 1,
      channels: 1,
      sampleRate: 22050,
      byteRate: 44100,
      blockAlign: 2,
      bitsPerSample: 16,
      dataTag: "data",
      dataSize: 44100,
    });
  });

  it("writes round(duration * sampleRate) samples and reports that duration", () => {
    const media = renderAudio({ ...base, durationSeconds: 1.25, sampleRate: 8000 });
    const h = header(media.data);
    expect(h.sampleRate).toBe(8000);
    expect(h.byteRate).toBe(16000);
    expect(h.dataSize).toBe(10000 * 2);
    expect(media.data.length).toBe(44 + h.dataSize);
    expect(media.durationSeconds).toBe(1.25);
  });

  it("produces the same bytes for the same prompt and seed", () => {
    const a = renderAudio({ ...base, durationSeconds: 0.5 });
    const b = renderAudio({ ...base, durationSeconds: 0.5 });
    expect(a.data.equals(b.data)).toBe(true);
  });

  it("produces a different sound for a different seed", () => {
    const a = renderAudio({ ...base, durationSeconds: 0.5 });
    const b = renderAudio({ ...base, seed: 1235, durationSeconds: 0.5 });
    expect(a.data.equals(b.data)).toBe(false);
  });

  it("is clearly audible, never clips, and fades in and out from silence", () => {
    const pcm = samples(renderAudio({ ...base, durationSeconds: 2 }).data);
    const peak = Math.max(...pcm.map(Math.abs));
    expect(peak).toBeGreaterThan(0.2 * 32767);
    expect(peak).toBeLessThanOrEqual(0.8 * 32767);
    expect(Math.abs(pcm[0] ?? 1)).toBeLessThan(50);
    expect(Math.abs(pcm[pcm.length - 1] ?? 1)).toBeLessThan(50);
  });

  it("still writes at least one sample for a tiny duration", () => {
    const media = renderAudio({ ...base, durationSeconds: 0.00001 });
    expect(header(media.data).dataSize).toBe(2);
  });

  it.each([
    ["zero duration", { durationSeconds: 0 }],
    ["negative duration", { durationSeconds: -1 }],
    ["duration above 600 s", { durationSeconds: 600.5 }],
    ["NaN duration", { durationSeconds: Number.NaN }],
    ["fractional sample rate", { durationSeconds: 1, sampleRate: 22050.5 }],
    ["sample rate below 8000", { durationSeconds: 1, sampleRate: 4000 }],
  ])("throws RangeError for %s", (_label, args) => {
    expect(() => renderAudio({ ...base, ...args })).toThrow(RangeError);
  });
});

describe("renderVideo", () => {
  const clip = { ...base, width: 64, height: 48, durationSeconds: 2 };

  it("writes an APNG whose every chunk has a valid CRC", () => {
    const media = renderVideo(clip);
    expect(media.contentType).toBe("image/apng");
    expect(media).toMatchObject({ width: 64, height: 48, durationSeconds: 2 });
    const chunks = parseChunks(media.data);
    expect(chunks.length).toBeGreaterThan(4);
    expect(chunks.filter((c) => !c.crcValid).map((c) => c.type)).toEqual([]);
  });

  it("declares round(duration * fps) frames at 4 fps by default and loops forever", () => {
    const info = describeAnimation(parseChunks(renderVideo(clip).data));
    expect(info.frameCount).toBe(8);
    expect(info.plays).toBe(0);
    expect(info.delays).toEqual(Array(8).fill({ numerator: 250, denominator: 1000 }));
  });

  it("orders chunks as IHDR, acTL, then fcTL+IDAT for frame 0 and fcTL+fdAT for the rest", () => {
    const info = describeAnimation(parseChunks(renderVideo({ ...clip, fps: 1.5 }).data));
    expect(info.frameCount).toBe(3);
    expect(info.order).toEqual([
      "IHDR",
      "acTL",
      "fcTL",
      "IDAT",
      "fcTL",
      "fdAT",
      "fcTL",
      "fdAT",
      "IEND",
    ]);
  });

  it("numbers fcTL and fdAT chunks from 0 with no gaps", () => {
    const info = describeAnimation(parseChunks(renderVideo({ ...clip, fps: 5 }).data));
    expect(info.frameCount).toBe(10);
    // One fcTL per frame plus one fdAT for every frame after the first.
    expect(info.sequences).toEqual(Array.from({ length: 19 }, (_, i) => i));
  });

  it("caps the animation at 48 frames and lengthens each frame to keep the duration", () => {
    const info = describeAnimation(parseChunks(renderVideo({ ...clip, durationSeconds: 60 }).data));
    expect(info.frameCount).toBe(48);
    expect(info.delays[0]).toEqual({ numerator: 1250, denominator: 1000 });
  });

  it("writes a single frame when the clip is shorter than one frame", () => {
    const info = describeAnimation(
      parseChunks(renderVideo({ ...clip, durationSeconds: 0.1 }).data),
    );
    expect(info.frameCount).toBe(1);
    expect(info.order).toEqual(["IHDR", "acTL", "fcTL", "IDAT", "IEND"]);
  });

  it("has a default image that pngjs decodes to the same pixels as renderImage", () => {
    const video = PNG.sync.read(renderVideo(clip).data);
    const still = PNG.sync.read(renderImage({ ...base, width: 64, height: 48 }).data);
    expect(video.width).toBe(64);
    expect(video.height).toBe(48);
    expect(video.data.equals(still.data)).toBe(true);
  });

  it("decodes every frame and moves the scene between frames", () => {
    const chunks = parseChunks(renderVideo(clip).data);
    const frames = Array.from({ length: 8 }, (_, i) => decodeFrame(chunks, i));
    for (const frame of frames) expect([frame.width, frame.height]).toEqual([64, 48]);
    const [first, , third] = frames;
    if (!first || !third) throw new Error("missing frames");
    expect(meanAbsDifference(first.data, third.data)).toBeGreaterThan(2);
    // Each fdAT holds one filter byte plus three bytes per pixel for every full-size scanline.
    const fdat = chunks.find((c) => c.type === "fdAT");
    expect(inflateSync(fdat?.body.subarray(4) ?? Buffer.alloc(0)).length).toBe((64 * 3 + 1) * 48);
  });

  it("produces the same bytes for the same inputs and different bytes for another seed", () => {
    const a = renderVideo(clip);
    expect(renderVideo(clip).data.equals(a.data)).toBe(true);
    expect(renderVideo({ ...clip, seed: 99 }).data.equals(a.data)).toBe(false);
  });

  it("writes valid CRCs even when zlib.crc32 is unavailable", () => {
    const actualZlib = jest.requireActual<typeof import("node:zlib")>("node:zlib");
    // Spying on deflateSync proves the isolated copy really loaded the stripped-down zlib.
    const deflateSync = jest.fn(actualZlib.deflateSync);
    let isolated: SimRender | undefined;
    jest.isolateModules(() => {
      jest.doMock("node:zlib", () => ({ ...actualZlib, deflateSync, crc32: undefined }));
      isolated = jest.requireActual<SimRender>("../../src/providers/simulated/sim-render");
    });
    jest.dontMock("node:zlib");
    if (!isolated) throw new Error("module did not load");

    const media = isolated.renderVideo(clip);
    expect(deflateSync).toHaveBeenCalled();
    expect(parseChunks(media.data).every((c) => c.crcValid)).toBe(true);
    expect(media.data.equals(renderVideo(clip).data)).toBe(true);
  });

  it.each([
    ["zero fps", { fps: 0 }],
    ["fps above 60", { fps: 61 }],
    ["zero duration", { durationSeconds: 0 }],
    ["duration above 600 s", { durationSeconds: 601 }],
    ["width above 4096", { width: 5000 }],
    ["fractional height", { height: 10.5 }],
  ])("throws RangeError for %s", (_label, args) => {
    expect(() => renderVideo({ ...clip, ...args })).toThrow(RangeError);
  });
});
