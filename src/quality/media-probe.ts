/**
 * Small container parsers for what sharp does not read: whether a PNG (or APNG) file is
 * complete and how long an APNG plays, a WAV's format and length, an MP4's duration. Each reads
 * only headers and chunk lengths, never the media itself, and says `complete: false` when a
 * chunk or box runs past the end of the file (a truncated download or upload).
 */

export interface ContainerProbe {
  /** Every chunk / box the headers announce is present in full. */
  complete: boolean;
  /** Playing time, when the container says (APNG, WAV, MP4). */
  durationSeconds?: number;
  /** Why the file is incomplete or unreadable, for the report. */
  problem?: string;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** PNG and APNG: chunks up to IEND, and for APNG the sum of the frame delays. */
export function probePng(data: Buffer): ContainerProbe {
  if (data.length < 8 || !data.subarray(0, 8).equals(PNG_SIGNATURE)) {
    return { complete: false, problem: "no PNG signature" };
  }
  let offset = 8;
  let animated = false;
  let seconds = 0;
  while (offset + 8 <= data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    const end = offset + 12 + length;
    if (end > data.length) {
      return { complete: false, problem: `${type} chunk cut off at byte ${data.length}` };
    }
    if (type === "acTL") animated = true;
    if (type === "fcTL" && length >= 26) {
      const numerator = data.readUInt16BE(offset + 8 + 20);
      // A zero denominator means 1/100 s (PNG's APNG extension).
      const denominator = data.readUInt16BE(offset + 8 + 22) || 100;
      seconds += numerator / denominator;
    }
    if (type === "IEND") {
      return animated ? { complete: true, durationSeconds: seconds } : { complete: true };
    }
    offset = end;
  }
  return { complete: false, problem: "no IEND chunk: the file ends early" };
}

export interface WavProbe extends ContainerProbe {
  sampleRate?: number;
  channels?: number;
  bitsPerSample?: number;
  /** Largest absolute sample over full scale (16-bit PCM only), 0 for silence. */
  peak?: number;
}

/** RIFF/WAVE: the fmt chunk, and the data chunk's declared length against what is there. */
export function probeWav(data: Buffer): WavProbe {
  if (data.length < 12 || data.toString("latin1", 0, 4) !== "RIFF") {
    return { complete: false, problem: "no RIFF header" };
  }
  let offset = 12;
  let fmt: { channels: number; sampleRate: number; byteRate: number; bits: number } | undefined;
  while (offset + 8 <= data.length) {
    const id = data.toString("latin1", offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === "fmt ") {
      if (body + 16 > data.length) return { complete: false, problem: "fmt chunk cut off" };
      fmt = {
        channels: data.readUInt16LE(body + 2),
        sampleRate: data.readUInt32LE(body + 4),
        byteRate: data.readUInt32LE(body + 8),
        bits: data.readUInt16LE(body + 14),
      };
    }
    if (id === "data") {
      if (!fmt || fmt.byteRate === 0) return { complete: false, problem: "no fmt before data" };
      const present = Math.min(size, data.length - body);
      const info = {
        sampleRate: fmt.sampleRate,
        channels: fmt.channels,
        bitsPerSample: fmt.bits,
        durationSeconds: size / fmt.byteRate,
        peak: fmt.bits === 16 ? peak16(data, body, present) : undefined,
      };
      if (present < size) {
        return {
          ...info,
          complete: false,
          problem: `data chunk announces ${size} bytes, ${present} present`,
        };
      }
      return { ...info, complete: true };
    }
    offset = body + size + (size % 2); // chunks are padded to an even length
  }
  return { complete: false, problem: "no data chunk" };
}

function peak16(data: Buffer, start: number, bytes: number): number {
  let max = 0;
  for (let i = start; i + 1 < start + bytes; i += 2) {
    const v = Math.abs(data.readInt16LE(i));
    if (v > max) max = v;
  }
  return max / 32768;
}

/** ISO BMFF (MP4, M4A, MOV): top-level boxes all present, duration from `moov/mvhd`. */
export function probeMp4(data: Buffer): ContainerProbe {
  let offset = 0;
  let durationSeconds: number | undefined;
  while (offset + 8 <= data.length) {
    let size = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    let header = 8;
    if (size === 1) {
      if (offset + 16 > data.length) break;
      size = Number(data.readBigUInt64BE(offset + 8));
      header = 16;
    } else if (size === 0) {
      size = data.length - offset; // to the end of the file
    }
    if (size < header) return { complete: false, problem: `${type} box has a bad size` };
    if (offset + size > data.length) {
      return { complete: false, durationSeconds, problem: `${type} box cut off` };
    }
    if (type === "moov") durationSeconds = mvhdDuration(data, offset + header, offset + size);
    offset += size;
  }
  if (offset < data.length) return { complete: false, problem: "box header cut off" };
  if (durationSeconds === undefined) return { complete: false, problem: "no moov/mvhd box" };
  return { complete: true, durationSeconds };
}

function mvhdDuration(data: Buffer, start: number, end: number): number | undefined {
  let offset = start;
  while (offset + 8 <= end) {
    const size = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    if (size < 8) return undefined;
    if (type === "mvhd" && offset + 32 <= end) {
      const version = data[offset + 8];
      if (version === 1 && offset + 44 <= end) {
        const timescale = data.readUInt32BE(offset + 28);
        const duration = Number(data.readBigUInt64BE(offset + 32));
        return timescale ? duration / timescale : undefined;
      }
      const timescale = data.readUInt32BE(offset + 20);
      const duration = data.readUInt32BE(offset + 24);
      return timescale ? duration / timescale : undefined;
    }
    offset += size;
  }
  return undefined;
}
