/**
 * Deterministic media for the simulated provider. Demos, tests and load tests need real files
 * that open in a browser or player, that are byte-identical for identical inputs (so caching
 * and snapshot tests behave), and that visibly change with the prompt or seed.
 *
 * Everything is derived from one PRNG stream seeded by SHA-256(prompt + "\0" + seed). Pixels and
 * samples use only V8's fdlibm-based Math, so they do not vary by platform. Compressed PNG bytes
 * are stable for a given Node build, but another zlib build could pick different (equally valid)
 * deflate output, so cross-machine golden files should compare decoded pixels, not bytes.
 */
import { createHash } from "node:crypto";
import * as zlib from "node:zlib";
import { PNG } from "pngjs";

export interface RenderedMedia {
  data: Buffer;
  contentType: string;
  width?: number;
  height?: number;
  durationSeconds?: number;
}

const MAX_DIMENSION = 4096;
const MAX_DURATION_SECONDS = 600;
const DEFAULT_SAMPLE_RATE = 22050;
const MIN_SAMPLE_RATE = 8000;
const MAX_SAMPLE_RATE = 96000;
const DEFAULT_FPS = 4;
const MAX_FPS = 60;
const MAX_FRAMES = 48;
const TAU = 2 * Math.PI;

// ---------------------------------------------------------------------------------------------
// Validation

function assertPromptAndSeed(prompt: string, seed: number): void {
  if (typeof prompt !== "string") throw new TypeError("prompt must be a string");
  if (typeof seed !== "number" || !Number.isFinite(seed)) {
    throw new RangeError(`seed must be a finite number, got ${String(seed)}`);
  }
}

function assertDimension(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
    throw new RangeError(
      `${name} must be an integer between 1 and ${MAX_DIMENSION}, got ${String(value)}`,
    );
  }
}

function assertDuration(value: number): void {
  if (typeof value !== "number" || !(value > 0) || value > MAX_DURATION_SECONDS) {
    throw new RangeError(
      `durationSeconds must be > 0 and <= ${MAX_DURATION_SECONDS}, got ${String(value)}`,
    );
  }
}

function assertSampleRate(value: number): void {
  if (!Number.isInteger(value) || value < MIN_SAMPLE_RATE || value > MAX_SAMPLE_RATE) {
    throw new RangeError(
      `sampleRate must be an integer between ${MIN_SAMPLE_RATE} and ${MAX_SAMPLE_RATE}, got ${String(value)}`,
    );
  }
}

function assertFps(value: number): void {
  if (typeof value !== "number" || !(value > 0) || value > MAX_FPS) {
    throw new RangeError(`fps must be > 0 and <= ${MAX_FPS}, got ${String(value)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Randomness

/** Uniform in [0, 1). */
type Rng = () => number;

/** sfc32: tiny, fast and statistically solid; seeded from 128 bits of the digest. */
function sfc32(seedA: number, seedB: number, seedC: number, seedD: number): Rng {
  let a = seedA >>> 0;
  let b = seedB >>> 0;
  let c = seedC >>> 0;
  let d = seedD >>> 0;
  const next = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
  // The first outputs of sfc32 are correlated with the seed words; discard them.
  for (let i = 0; i < 12; i++) next();
  return next;
}

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function rngFor(prompt: string, seed: number): Rng {
  const hash = digest(`${prompt}\u0000${String(seed)}`);
  return sfc32(
    hash.readUInt32BE(0),
    hash.readUInt32BE(4),
    hash.readUInt32BE(8),
    hash.readUInt32BE(12),
  );
}

function between(rng: Rng, min: number, max: number): number {
  return min + (max - min) * rng();
}

function intBetween(rng: Rng, min: number, maxInclusive: number): number {
  return min + Math.floor(rng() * (maxInclusive - min + 1));
}

// ---------------------------------------------------------------------------------------------
// Colour

interface Rgb {
  r: number;
  g: number;
  b: number;
}

/** h wraps around; s and v in [0, 1]; channels come out in [0, 255]. */
function hsv(h: number, s: number, v: number): Rgb {
  const hue = (((h % 1) + 1) % 1) * 6;
  const sector = Math.floor(hue);
  const f = hue - sector;
  const p = v * (1 - s);
  const q = v * (1 - s * f);
  const t = v * (1 - s * (1 - f));
  const table: [number, number, number][] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ];
  const [r, g, b] = table[sector % 6] ?? [v, t, p];
  return { r: r * 255, g: g * 255, b: b * 255 };
}

/**
 * The band colour depends on the seed alone, so the same seed is recognisable across prompts.
 * It is hashed rather than taken from seed bits so neighbouring seeds look clearly different.
 */
function seedColor(seed: number): Rgb {
  const hash = digest(`seed-band\u0000${String(seed)}`);
  return hsv(
    hash.readUInt32BE(0) / 4294967296,
    0.55 + (hash[4] ?? 0) / 850,
    0.8 + (hash[5] ?? 0) / 1275,
  );
}

// ---------------------------------------------------------------------------------------------
// Scene

/** A sine ripple stored as a lookup table so the per-pixel cost is a single array read. */
interface Wave {
  amplitude: number;
  /** Cycles across the whole table rather than per pixel, so the look is size-independent. */
  cycles: number;
  phase: number;
  /** Whole phase turns per animation loop, so the video loops without a jump. */
  turnsPerLoop: number;
}

interface SoftBlob {
  x: number;
  y: number;
  radius: number;
  color: Rgb;
  opacity: number;
  orbitX: number;
  orbitY: number;
  turnsX: number;
  turnsY: number;
  phaseX: number;
  phaseY: number;
}

interface Scene {
  width: number;
  height: number;
  from: Rgb;
  to: Rgb;
  /** Gradient position g = gradX * x + gradY * y + gradOffset, in [0, 1] across the image. */
  gradX: number;
  gradY: number;
  gradOffset: number;
  waveX: Wave;
  waveY: Wave;
  waveDiagonal: Wave;
  waveAntiDiagonal: Wave;
  blobs: SoftBlob[];
  vignette: number;
  bandTop: number;
  bandColor: Rgb;
}

function makeWave(rng: Rng, amplitude: number): Wave {
  return {
    amplitude: amplitude * between(rng, 0.6, 1),
    cycles: between(rng, 0.8, 3.2),
    phase: rng() * TAU,
    turnsPerLoop: rng() < 0.5 ? -1 : 1,
  };
}

function makeBlob(rng: Rng, baseHue: number, width: number, height: number): SoftBlob {
  const size = Math.min(width, height);
  const sign = (): number => (rng() < 0.5 ? -1 : 1);
  return {
    x: between(rng, 0.1, 0.9) * width,
    y: between(rng, 0.1, 0.85) * height,
    radius: between(rng, 0.1, 0.3) * size,
    color: hsv(
      baseHue + between(rng, -0.22, 0.22) + (rng() < 0.3 ? 0.5 : 0),
      between(rng, 0.45, 0.9),
      between(rng, 0.8, 1),
    ),
    opacity: between(rng, 0.45, 0.85),
    orbitX: between(rng, 0.05, 0.18) * width,
    orbitY: between(rng, 0.05, 0.18) * height,
    turnsX: sign() * intBetween(rng, 1, 2),
    turnsY: sign() * intBetween(rng, 1, 2),
    phaseX: rng() * TAU,
    phaseY: rng() * TAU,
  };
}

/**
 * Draws every parameter up front and in a fixed order, so a still image and frame 0 of a video
 * with the same inputs are the same picture.
 */
function buildScene(prompt: string, seed: number, width: number, height: number): Scene {
  const rng = rngFor(prompt, seed);
  const baseHue = rng();
  const from = hsv(baseHue, between(rng, 0.55, 0.85), between(rng, 0.16, 0.32));
  const to = hsv(
    baseHue + between(rng, 0.25, 0.5),
    between(rng, 0.45, 0.8),
    between(rng, 0.5, 0.75),
  );

  const angle = rng() * TAU;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const extent = Math.abs(width * cos) + Math.abs(height * sin);

  const waveX = makeWave(rng, 0.16);
  const waveY = makeWave(rng, 0.16);
  const waveDiagonal = makeWave(rng, 0.12);
  const waveAntiDiagonal = makeWave(rng, 0.1);

  const blobCount = intBetween(rng, 4, 7);
  const blobs: SoftBlob[] = [];
  for (let i = 0; i < blobCount; i++) blobs.push(makeBlob(rng, baseHue, width, height));

  const bandHeight = Math.min(height, Math.max(1, Math.round(height * 0.06)));
  return {
    width,
    height,
    from,
    to,
    gradX: cos / extent,
    gradY: sin / extent,
    gradOffset: 0.5 - (width * cos + height * sin) / (2 * extent),
    waveX,
    waveY,
    waveDiagonal,
    waveAntiDiagonal,
    blobs,
    vignette: between(rng, 0.18, 0.32),
    bandTop: height - bandHeight,
    bandColor: seedColor(seed),
  };
}

/** `time` is the position in the animation loop, in [0, 1). */
function waveTable(wave: Wave, length: number, time: number): Float32Array {
  const table = new Float32Array(length);
  const step = (TAU * wave.cycles) / Math.max(1, length);
  const phase = wave.phase + TAU * wave.turnsPerLoop * time;
  for (let i = 0; i < length; i++) table[i] = wave.amplitude * Math.sin(i * step + phase);
  return table;
}

/** Darkens towards the edges; separable so it costs one multiply per pixel. */
function vignetteTable(length: number, strength: number): Float32Array {
  const table = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const u = ((i + 0.5) / length) * 2 - 1;
    table[i] = 1 - strength * u * u;
  }
  return table;
}

interface PlacedBlob {
  x: number;
  y: number;
  radius: number;
  color: Rgb;
  opacity: number;
}

function placeBlob(blob: SoftBlob, time: number): PlacedBlob {
  // Subtracting the t = 0 offset keeps frame 0 identical to the still image.
  const dx = Math.sin(TAU * blob.turnsX * time + blob.phaseX) - Math.sin(blob.phaseX);
  const dy = Math.sin(TAU * blob.turnsY * time + blob.phaseY) - Math.sin(blob.phaseY);
  return {
    x: blob.x + blob.orbitX * dx,
    y: blob.y + blob.orbitY * dy,
    radius: blob.radius,
    color: blob.color,
    opacity: blob.opacity,
  };
}

/** Blends a soft disc into one RGB float row; only the disc's span is touched. */
function blendBlobIntoRow(
  row: Float32Array,
  blob: PlacedBlob,
  centerY: number,
  width: number,
): void {
  const dy = centerY - blob.y;
  const r2 = blob.radius * blob.radius;
  const dy2 = dy * dy;
  if (dy2 >= r2) return;
  const half = Math.sqrt(r2 - dy2);
  const x0 = Math.max(0, Math.ceil(blob.x - half - 0.5));
  const x1 = Math.min(width - 1, Math.floor(blob.x + half - 0.5));
  const inv = 1 / r2;
  const { r, g, b } = blob.color;
  for (let x = x0; x <= x1; x++) {
    const dx = x + 0.5 - blob.x;
    const q = 1 - (dx * dx + dy2) * inv;
    if (q <= 0) continue;
    // q^2 has a zero slope at the rim, which is what makes the edge look soft.
    const w = q * q * blob.opacity;
    const i = x * 3;
    const cr = row[i] ?? 0;
    const cg = row[i + 1] ?? 0;
    const cb = row[i + 2] ?? 0;
    row[i] = cr + (r - cr) * w;
    row[i + 1] = cg + (g - cg) * w;
    row[i + 2] = cb + (b - cb) * w;
  }
}

/** Renders one frame as packed 8-bit RGB, rows top to bottom. */
function paintFrame(scene: Scene, time: number): Uint8ClampedArray {
  const { width, height, from, to } = scene;
  const out = new Uint8ClampedArray(width * height * 3);
  const sx = waveTable(scene.waveX, width, time);
  const sy = waveTable(scene.waveY, height, time);
  const sd = waveTable(scene.waveDiagonal, width + height - 1, time);
  const sa = waveTable(scene.waveAntiDiagonal, width + height - 1, time);
  const vx = vignetteTable(width, scene.vignette);
  const vy = vignetteTable(height, scene.vignette);
  const blobs = scene.blobs.map((blob) => placeBlob(blob, time));
  const row = new Float32Array(width * 3);
  const dr = to.r - from.r;
  const dg = to.g - from.g;
  const db = to.b - from.b;

  for (let y = 0; y < scene.bandTop; y++) {
    const cy = y + 0.5;
    const rowBase = scene.gradOffset + scene.gradY * cy + (sy[y] ?? 0);
    const antiOffset = height - 1 - y;
    for (let x = 0, i = 0; x < width; x++, i += 3) {
      let t =
        rowBase +
        scene.gradX * (x + 0.5) +
        (sx[x] ?? 0) +
        (sd[x + y] ?? 0) +
        (sa[x + antiOffset] ?? 0);
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      // Smoothstep turns the linear ramp into broad bands, which reads as lighting.
      t = t * t * (3 - 2 * t);
      row[i] = from.r + dr * t;
      row[i + 1] = from.g + dg * t;
      row[i + 2] = from.b + db * t;
    }
    for (const blob of blobs) blendBlobIntoRow(row, blob, cy, width);
    const shade = vy[y] ?? 1;
    let o = y * width * 3;
    for (let x = 0, i = 0; x < width; x++, i += 3) {
      const v = shade * (vx[x] ?? 1);
      out[o++] = (row[i] ?? 0) * v;
      out[o++] = (row[i + 1] ?? 0) * v;
      out[o++] = (row[i + 2] ?? 0) * v;
    }
  }
  paintBand(out, scene);
  return out;
}

/** The seed band sits on top of everything and never moves, so it stays legible in video. */
function paintBand(out: Uint8ClampedArray, scene: Scene): void {
  const { width, height, bandTop, bandColor } = scene;
  const hasEdge = height - bandTop >= 3;
  for (let y = bandTop; y < height; y++) {
    // A darker first row separates the band from scenes that happen to share its colour.
    const k = hasEdge && y === bandTop ? 0.45 : 1;
    const r = bandColor.r * k;
    const g = bandColor.g * k;
    const b = bandColor.b * k;
    let o = y * width * 3;
    for (let x = 0; x < width; x++) {
      out[o++] = r;
      out[o++] = g;
      out[o++] = b;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PNG / APNG encoding

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const COLOR_TYPE_RGB = 2;

let crcTable: Uint32Array | undefined;

/** Only used on runtimes without zlib.crc32 (added in Node 20.15). */
function tableCrc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = (crcTable[(crc ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const nativeCrc32 = typeof zlib.crc32 === "function" ? zlib.crc32 : undefined;

function crc32(data: Uint8Array): number {
  return nativeCrc32 ? nativeCrc32(data) : tableCrc32(data);
}

function chunk(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(12 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.write(type, 4, "latin1");
  body.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + body.length)), 8 + body.length);
  return out;
}

function ihdr(width: number, height: number): Buffer {
  const body = Buffer.alloc(13);
  body.writeUInt32BE(width, 0);
  body.writeUInt32BE(height, 4);
  body[8] = 8; // bit depth
  body[9] = COLOR_TYPE_RGB;
  // Bytes 10..12 (compression, filter method, interlace) are all 0.
  return chunk("IHDR", body);
}

/**
 * Prefixes every scanline with filter type 1 (Sub). The scenes are smooth, so Sub leaves
 * mostly tiny repeated deltas, which deflate both faster and smaller than raw pixels.
 */
function subFilter(rgb: Uint8ClampedArray, width: number, height: number): Buffer {
  const out = Buffer.alloc((width * 3 + 1) * height);
  let s = 0;
  let o = 0;
  for (let y = 0; y < height; y++) {
    out[o++] = 1;
    let pr = 0;
    let pg = 0;
    let pb = 0;
    for (let x = 0; x < width; x++) {
      const r = rgb[s++] ?? 0;
      const g = rgb[s++] ?? 0;
      const b = rgb[s++] ?? 0;
      // Negative differences wrap modulo 256 on store, which is exactly what Sub specifies.
      out[o++] = r - pr;
      out[o++] = g - pg;
      out[o++] = b - pb;
      pr = r;
      pg = g;
      pb = b;
    }
  }
  return out;
}

function compressFrame(rgb: Uint8ClampedArray, width: number, height: number): Buffer {
  // Z_RLE suits filtered smooth images: nearly as small as the default strategy, much faster.
  return zlib.deflateSync(subFilter(rgb, width, height), {
    level: 6,
    strategy: zlib.constants.Z_RLE,
  });
}

/**
 * A frame delay as the fcTL fraction. Both fields are 16-bit, so long delays fall back from
 * milliseconds to centiseconds (600 s is 60000 cs).
 */
function frameDelay(seconds: number): { numerator: number; denominator: number } {
  const ms = Math.max(1, Math.round(seconds * 1000));
  if (ms <= 0xffff) return { numerator: ms, denominator: 1000 };
  return { numerator: Math.min(0xffff, Math.round(seconds * 100)), denominator: 100 };
}

function actl(frameCount: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(frameCount, 0);
  body.writeUInt32BE(0, 4); // loop forever
  return chunk("acTL", body);
}

function fctl(
  sequence: number,
  width: number,
  height: number,
  delay: { numerator: number; denominator: number },
): Buffer {
  const body = Buffer.alloc(26);
  body.writeUInt32BE(sequence, 0);
  body.writeUInt32BE(width, 4);
  body.writeUInt32BE(height, 8);
  body.writeUInt32BE(0, 12); // x offset
  body.writeUInt32BE(0, 16); // y offset
  body.writeUInt16BE(delay.numerator, 20);
  body.writeUInt16BE(delay.denominator, 22);
  body[24] = 0; // dispose: none
  body[25] = 0; // blend: source, since every frame covers the full canvas
  return chunk("fcTL", body);
}

function fdat(sequence: number, compressed: Buffer): Buffer {
  const body = Buffer.alloc(4 + compressed.length);
  body.writeUInt32BE(sequence, 0);
  compressed.copy(body, 4);
  return chunk("fdAT", body);
}

// ---------------------------------------------------------------------------------------------
// Audio

interface Tune {
  noteSeconds: number;
  /** Melody frequency per note slot, in Hz. */
  notes: number[];
  chordSeconds: number;
  /** Pad voices per chord slot, in Hz. */
  chords: number[][];
}

const PENTATONIC = [0, 2, 4, 7, 9];
/** I, V, vi, IV as semitone offsets, voiced close. */
const PROGRESSION = [
  [0, 4, 7],
  [-5, -1, 2],
  [-3, 0, 4],
  [-7, -3, 0],
];

function midiToHz(note: number): number {
  return 440 * Math.pow(2, (note - 69) / 12);
}

function composeTune(rng: Rng, durationSeconds: number): Tune {
  const root = intBetween(rng, 57, 69);
  const noteSeconds = between(rng, 0.18, 0.4);
  const noteCount = Math.max(1, Math.ceil(durationSeconds / noteSeconds));
  const notes: number[] = [];
  // A bounded random walk over two octaves of the scale sounds like a tune, not like noise.
  let degree = intBetween(rng, 3, 6);
  for (let i = 0; i < noteCount; i++) {
    degree = Math.min(10, Math.max(0, degree + intBetween(rng, -2, 2)));
    const octave = Math.floor(degree / PENTATONIC.length);
    const step = PENTATONIC[degree % PENTATONIC.length] ?? 0;
    notes.push(midiToHz(root + 12 * octave + step));
  }
  const chordSeconds = noteSeconds * 4;
  const chordCount = Math.max(1, Math.ceil(durationSeconds / chordSeconds));
  const rotation = intBetween(rng, 0, PROGRESSION.length - 1);
  const chords: number[][] = [];
  for (let i = 0; i < chordCount; i++) {
    const shape = PROGRESSION[(i + rotation) % PROGRESSION.length] ?? [0, 4, 7];
    chords.push(shape.map((offset) => midiToHz(root - 12 + offset)));
  }
  return { noteSeconds, notes, chordSeconds, chords };
}

interface Tone {
  hz: number;
  level: number;
  /** Amplitude of the octave overtone relative to the fundamental; gives the melody a timbre. */
  overtone: number;
  /** Exponential decay rate in 1/s; 0 holds the level (pad). */
  decay: number;
  /** Linear ramp at both ends of the segment, so note and chord changes do not click. */
  rampSeconds: number;
}

/**
 * Adds one tone to samples [start, end). A rotating phasor replaces Math.sin per sample (the
 * difference is inaudible over a segment of a few seconds), which keeps 10-minute clips cheap.
 */
function addTone(
  out: Float32Array,
  start: number,
  end: number,
  tone: Tone,
  sampleRate: number,
): void {
  const step = (TAU * tone.hz) / sampleRate;
  const cosStep = Math.cos(step);
  const sinStep = Math.sin(step);
  const decayStep = Math.exp(-tone.decay / sampleRate);
  const ramp = Math.max(1, tone.rampSeconds * sampleRate);
  let cos = 1;
  let sin = 0;
  let envelope = tone.level;
  for (let i = start; i < end; i++) {
    const edge = Math.min(1, (i - start) / ramp, (end - i) / ramp);
    const wave = sin + tone.overtone * 2 * sin * cos; // sin(2x) = 2 sin(x) cos(x)
    out[i] = (out[i] ?? 0) + envelope * edge * wave;
    const nextCos = cos * cosStep - sin * sinStep;
    sin = sin * cosStep + cos * sinStep;
    cos = nextCos;
    envelope *= decayStep;
  }
}

/** Sample index where segment `index` of `seconds` each starts, clamped to the clip. */
function segmentStart(index: number, seconds: number, sampleRate: number, count: number): number {
  return Math.min(count, Math.round(index * seconds * sampleRate));
}

function synthesize(tune: Tune, sampleCount: number, sampleRate: number): Float32Array {
  const mix = new Float32Array(sampleCount);
  // Peak stays at 0.4 * 1.25 + 3 * 0.1 = 0.8 of full scale, so no normalisation pass is needed.
  tune.notes.forEach((hz, i) => {
    const start = segmentStart(i, tune.noteSeconds, sampleRate, sampleCount);
    const end = segmentStart(i + 1, tune.noteSeconds, sampleRate, sampleCount);
    addTone(
      mix,
      start,
      end,
      { hz, level: 0.4, overtone: 0.25, decay: 3, rampSeconds: 0.008 },
      sampleRate,
    );
  });
  tune.chords.forEach((voices, i) => {
    const start = segmentStart(i, tune.chordSeconds, sampleRate, sampleCount);
    const end = segmentStart(i + 1, tune.chordSeconds, sampleRate, sampleCount);
    for (const hz of voices) {
      addTone(
        mix,
        start,
        end,
        { hz, level: 0.1, overtone: 0, decay: 0, rampSeconds: 0.03 },
        sampleRate,
      );
    }
  });
  return mix;
}

/** 44-byte RIFF/WAVE header plus 16-bit PCM, with a short master fade in and out. */
function wavFile(mix: Float32Array, sampleRate: number): Buffer {
  const count = mix.length;
  const dataBytes = count * 2;
  const out = Buffer.alloc(44 + dataBytes);
  out.write("RIFF", 0, "latin1");
  out.writeUInt32LE(36 + dataBytes, 4);
  out.write("WAVE", 8, "latin1");
  out.write("fmt ", 12, "latin1");
  out.writeUInt32LE(16, 16); // fmt chunk size
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(sampleRate, 24);
  out.writeUInt32LE(sampleRate * 2, 28); // byte rate
  out.writeUInt16LE(2, 32); // block align
  out.writeUInt16LE(16, 34); // bits per sample
  out.write("data", 36, "latin1");
  out.writeUInt32LE(dataBytes, 40);
  const fade = Math.max(1, Math.min(0.05 * sampleRate, count / 4));
  // DataView pins little-endian regardless of the host byte order.
  const view = new DataView(out.buffer, out.byteOffset + 44, dataBytes);
  for (let i = 0; i < count; i++) {
    const master = Math.min(1, i / fade, (count - 1 - i) / fade);
    view.setInt16(i * 2, Math.round((mix[i] ?? 0) * master * 32767), true);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Renders a PNG (8-bit RGB, no alpha) of exactly width x height: a two-colour gradient bent by
 * interfering ripples, soft glowing discs, a vignette, and a band along the bottom ~6% whose
 * colour depends only on the seed.
 *
 * Contract: byte-identical output for identical inputs (on a given Node build); a different
 * prompt or seed changes the palette and layout. width and height must be integers in 1..4096, seed a finite number;
 * otherwise throws RangeError.
 */
export function renderImage(opts: {
  prompt: string;
  seed: number;
  width: number;
  height: number;
}): RenderedMedia {
  const { prompt, seed, width, height } = opts;
  assertPromptAndSeed(prompt, seed);
  assertDimension("width", width);
  assertDimension("height", height);

  const rgb = paintFrame(buildScene(prompt, seed, width, height), 0);
  const png = new PNG();
  png.width = width;
  png.height = height;
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  const data = PNG.sync.write(png, {
    colorType: COLOR_TYPE_RGB,
    inputColorType: COLOR_TYPE_RGB,
    inputHasAlpha: false,
    filterType: 1,
    deflateLevel: 6,
    deflateStrategy: zlib.constants.Z_RLE,
  });
  return { data, contentType: "image/png", width, height };
}

/**
 * Renders a mono 16-bit PCM WAV: a pentatonic melody over a I-V-vi-IV pad, with pitches, key
 * and tempo drawn from the prompt and seed, and a short fade in and out.
 *
 * Contract: byte-identical output for identical inputs; round(durationSeconds * sampleRate)
 * samples (at least one) after a standard 44-byte header; peaks stay below 0.8 of full scale.
 * durationSeconds must be in (0, 600], sampleRate (default 22050) an integer in 8000..96000,
 * seed a finite number; otherwise throws RangeError. The returned durationSeconds is the exact
 * length of the written samples.
 */
export function renderAudio(opts: {
  prompt: string;
  seed: number;
  durationSeconds: number;
  sampleRate?: number;
}): RenderedMedia {
  const { prompt, seed, durationSeconds } = opts;
  const sampleRate = opts.sampleRate ?? DEFAULT_SAMPLE_RATE;
  assertPromptAndSeed(prompt, seed);
  assertDuration(durationSeconds);
  assertSampleRate(sampleRate);

  const sampleCount = Math.max(1, Math.round(durationSeconds * sampleRate));
  const tune = composeTune(rngFor(prompt, seed), sampleCount / sampleRate);
  const data = wavFile(synthesize(tune, sampleCount, sampleRate), sampleRate);
  return { data, contentType: "audio/wav", durationSeconds: sampleCount / sampleRate };
}

/**
 * Renders an animated PNG (APNG, 8-bit RGB) that loops forever: the renderImage scene with the
 * ripples and discs drifting along closed paths, so the loop has no jump. Frame 0 has the same
 * pixels as renderImage with the same inputs and is the default image for non-APNG decoders.
 *
 * Contract: frames = max(1, round(durationSeconds * fps)) capped at 48; each frame lasts
 * durationSeconds / frames (so a capped clip plays slower, not shorter). Byte-identical output
 * for identical inputs on a given Node build. width/height integers in 1..4096, durationSeconds
 * in (0, 600], fps (default 4) in (0, 60], seed a finite number; otherwise throws RangeError.
 * Cost grows with width * height * frames, so callers should bound the size.
 */
export function renderVideo(opts: {
  prompt: string;
  seed: number;
  width: number;
  height: number;
  durationSeconds: number;
  fps?: number;
}): RenderedMedia {
  const { prompt, seed, width, height, durationSeconds } = opts;
  const fps = opts.fps ?? DEFAULT_FPS;
  assertPromptAndSeed(prompt, seed);
  assertDimension("width", width);
  assertDimension("height", height);
  assertDuration(durationSeconds);
  assertFps(fps);

  const frameCount = Math.min(MAX_FRAMES, Math.max(1, Math.round(durationSeconds * fps)));
  const delay = frameDelay(durationSeconds / frameCount);
  const scene = buildScene(prompt, seed, width, height);

  const parts: Buffer[] = [PNG_SIGNATURE, ihdr(width, height), actl(frameCount)];
  let sequence = 0;
  for (let frame = 0; frame < frameCount; frame++) {
    parts.push(fctl(sequence++, width, height, delay));
    // Raw frames are compressed immediately so memory holds one uncompressed frame at a time.
    const compressed = compressFrame(paintFrame(scene, frame / frameCount), width, height);
    parts.push(frame === 0 ? chunk("IDAT", compressed) : fdat(sequence++, compressed));
  }
  parts.push(chunk("IEND", Buffer.alloc(0)));
  return {
    data: Buffer.concat(parts),
    contentType: "image/apng",
    width,
    height,
    durationSeconds,
  };
}

/**
 * One flat colour at width x height: a still PNG, or with `durationSeconds` a one-frame APNG
 * that lasts that long. What a provider's safety filter returns instead of an image (a black
 * frame) or a blank canvas; the simulated provider's `[sim:black]` and `[sim:blank]`.
 */
export function renderSolid(opts: {
  width: number;
  height: number;
  rgb: readonly [number, number, number];
  durationSeconds?: number;
}): RenderedMedia {
  const { width, height, rgb, durationSeconds } = opts;
  assertDimension("width", width);
  assertDimension("height", height);
  const pixels = new Uint8ClampedArray(width * height * 3);
  for (let i = 0; i < pixels.length; i += 3) {
    pixels[i] = rgb[0];
    pixels[i + 1] = rgb[1];
    pixels[i + 2] = rgb[2];
  }
  const compressed = compressFrame(pixels, width, height);
  if (durationSeconds === undefined) {
    const data = Buffer.concat([
      PNG_SIGNATURE,
      ihdr(width, height),
      chunk("IDAT", compressed),
      chunk("IEND", Buffer.alloc(0)),
    ]);
    return { data, contentType: "image/png", width, height };
  }
  assertDuration(durationSeconds);
  const data = Buffer.concat([
    PNG_SIGNATURE,
    ihdr(width, height),
    actl(1),
    fctl(0, width, height, frameDelay(durationSeconds)),
    chunk("IDAT", compressed),
    chunk("IEND", Buffer.alloc(0)),
  ]);
  return { data, contentType: "image/apng", width, height, durationSeconds };
}

/** A mono 16-bit PCM WAV of silence, `durationSeconds` long (the silent track of a failed TTS). */
export function renderSilence(opts: { durationSeconds: number; sampleRate?: number }) {
  const sampleRate = opts.sampleRate ?? DEFAULT_SAMPLE_RATE;
  assertDuration(opts.durationSeconds);
  assertSampleRate(sampleRate);
  const count = Math.max(1, Math.round(opts.durationSeconds * sampleRate));
  return {
    data: wavFile(new Float32Array(count), sampleRate),
    contentType: "audio/wav",
    durationSeconds: count / sampleRate,
  } satisfies RenderedMedia;
}
