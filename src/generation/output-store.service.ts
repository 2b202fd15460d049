import type { MediaType, StoredOutput } from "../entities";
import type { ProviderOutput } from "../providers";
import { ProviderError } from "../providers";
import { extensionFor, type ObjectStore } from "../storage/object-store";

export interface OutputStoreOptions {
  /** Largest output accepted from a provider (downloaded or inline). @defaultValue 100 MiB */
  maxBytes?: number;
  /** Time allowed to download one output, redirects included. @defaultValue 60 s */
  timeoutMs?: number;
}

/** One provider output's bytes, before it is stored. */
export interface FetchedOutput {
  data: Buffer;
  /** The type the bytes' signature shows; undefined when not a format we store. */
  contentType: string | undefined;
  /** The type the server or provider claimed. */
  label: string | undefined;
  /** As the provider reported them (not measured). */
  width?: number;
  height?: number;
  durationSeconds?: number;
}

/** Provider CDNs redirect once or twice; more is a loop or a misconfiguration. */
const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Headers that say nothing about the bytes: the bytes themselves decide. */
const GENERIC_TYPES = new Set(["", "application/octet-stream", "binary/octet-stream"]);

/**
 * Leading bytes of each format we store, in hex (`??` is any byte), first match wins.
 * APNG starts like PNG and is told apart by its chunks (see `sniffContentType`).
 */
const SIGNATURES: ReadonlyArray<readonly [contentType: string, hex: string]> = [
  ["image/png", "89 50 4E 47 0D 0A 1A 0A"],
  ["image/jpeg", "FF D8 FF"],
  ["image/gif", "47 49 46 38"], // GIF8
  ["image/webp", "52 49 46 46 ?? ?? ?? ?? 57 45 42 50"], // RIFF....WEBP
  ["audio/wav", "52 49 46 46 ?? ?? ?? ?? 57 41 56 45"], // RIFF....WAVE
  ["image/avif", "?? ?? ?? ?? 66 74 79 70 61 76 69 66"], // ....ftypavif
  ["audio/mp4", "?? ?? ?? ?? 66 74 79 70 4D 34 41 20"], // ....ftypM4A
  ["video/mp4", "?? ?? ?? ?? 66 74 79 70"], // ....ftyp, any other brand
  ["video/webm", "1A 45 DF A3"], // EBML
  ["audio/ogg", "4F 67 67 53"], // OggS
  ["audio/flac", "66 4C 61 43"], // fLaC
  ["audio/mpeg", "49 44 33"], // ID3 tag before the first frame
];

/**
 * What each generation media type may store. A still PNG is not a video, but the animated
 * formats (APNG from the simulated provider, GIF) are.
 */
const ACCEPTED: Record<MediaType, ReadonlySet<string>> = {
  IMAGE: new Set([
    "image/png",
    "image/apng",
    "image/jpeg",
    "image/webp",
    "image/gif",
    "image/avif",
  ]),
  VIDEO: new Set(["video/mp4", "video/webm", "image/apng", "image/gif"]),
  AUDIO: new Set(["audio/wav", "audio/mpeg", "audio/mp4", "audio/ogg", "audio/flac"]),
};

/**
 * Copies provider outputs into the object store, since provider URLs expire. Every output,
 * downloaded or inline, must be a file of the generation's media type: the bytes' signature
 * decides, since providers and CDNs label them loosely, and a header that names something
 * other than media (an HTML error page, a JSON error) is refused before the body is read.
 */
export class OutputStoreService {
  private readonly maxBytes: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly store: ObjectStore,
    opts: OutputStoreOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  async storeAll(
    generationId: string,
    attempt: number,
    outputs: ProviderOutput[],
    mediaType: MediaType,
  ): Promise<StoredOutput[]> {
    return this.putAll(generationId, attempt, await this.fetchAll(outputs), mediaType);
  }

  /**
   * The outputs' bytes, downloaded or inline, with the type their signature shows: what the
   * quality gate inspects before anything is stored. Refuses only what is not a media file
   * at all (an error page, more than `maxBytes`); whether it is the media asked for is
   * `putAll`'s (and the quality gate's) question.
   */
  async fetchAll(outputs: ProviderOutput[]): Promise<FetchedOutput[]> {
    return Promise.all(
      outputs.map(async (o) => {
        const { data, label } = o.data
          ? this.inline(o.data, o.contentType)
          : await this.download(o.url ?? "", o.contentType);
        return {
          data,
          label,
          contentType: sniffContentType(data),
          width: o.width,
          height: o.height,
          durationSeconds: o.durationSeconds,
        };
      }),
    );
  }

  /** Stores fetched outputs, each of which must be a file of the generation's media type. */
  async putAll(
    generationId: string,
    attempt: number,
    outputs: FetchedOutput[],
    mediaType: MediaType,
  ): Promise<StoredOutput[]> {
    return Promise.all(
      outputs.map(async (o, i) => {
        const contentType = checkMedia(o.data, o.label, mediaType);
        const key = `generations/${generationId}/${attempt}-${i}${extensionFor(contentType)}`;
        await this.store.put(key, o.data, contentType);
        return {
          key,
          contentType,
          bytes: o.data.length,
          width: o.width,
          height: o.height,
          durationSeconds: o.durationSeconds,
        };
      }),
    );
  }

  /** Bytes the provider returned in its answer (simulated provider, OpenAI's base64). */
  private inline(data: Buffer, declared?: string): { data: Buffer; label: string | undefined } {
    const refusal = this.refusal(declared, data.length);
    if (refusal) throw refusal;
    return { data, label: declared };
  }

  /** The body and the content type the server gave it (or the provider declared). */
  private async download(
    url: string,
    declared?: string,
  ): Promise<{ data: Buffer; label: string | undefined }> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const res = await this.fetchFollowingRedirects(url, signal);
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => undefined);
        throw new ProviderError(
          `output download failed with HTTP ${res.status}`,
          "OUTPUT_DOWNLOAD_FAILED",
          true,
        );
      }
      const label = res.headers.get("content-type") ?? declared;
      const refusal = this.refusal(label, Number(res.headers.get("content-length") ?? 0));
      if (refusal) {
        // Refused without reading the body: an error page, or more than we would keep.
        await res.body.cancel().catch(() => undefined);
        throw refusal;
      }

      // Content-Length may be absent (chunked) or count compressed bytes (fetch inflates
      // gzip), so the limit also applies to what actually arrives.
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        total += chunk.length;
        if (total > this.maxBytes) throw tooLarge(); // leaving the loop cancels the stream
        chunks.push(Buffer.from(chunk));
      }
      return { data: Buffer.concat(chunks), label };
    } catch (err) {
      if (err instanceof ProviderError) throw err;
      const timedOut = signal.aborted;
      throw new ProviderError(
        timedOut
          ? `output download timed out after ${this.timeoutMs} ms`
          : `output download failed (${(err as Error).message})`,
        "OUTPUT_DOWNLOAD_FAILED",
        true,
      );
    }
  }

  /** Why an output is refused from its label and size alone, before its bytes are read. */
  private refusal(label: string | undefined, bytes: number): ProviderError | undefined {
    const type = mediaTypeOf(label);
    if (!GENERIC_TYPES.has(type) && !/^(image|video|audio)\//.test(type)) {
      // Retryable: another provider may well return a proper file.
      return new ProviderError(`output is ${type}, not a media file`, "INVALID_OUTPUT", true);
    }
    if (bytes > this.maxBytes) return tooLarge();
    return undefined;
  }

  /** Follows at most `MAX_REDIRECTS` redirects, each to an http(s) URL. */
  private async fetchFollowingRedirects(url: string, signal: AbortSignal): Promise<Response> {
    let current = url;
    for (let redirects = 0; ; redirects++) {
      if (!/^https?:\/\//i.test(current)) {
        throw new ProviderError(
          redirects === 0
            ? "provider output has no http(s) URL"
            : `output redirected to a non-http(s) URL (${new URL(current).protocol})`,
          "INVALID_OUTPUT",
          true,
        );
      }
      const res = await fetch(current, { signal, redirect: "manual" });
      if (!REDIRECT_STATUSES.has(res.status)) return res;
      await res.body?.cancel().catch(() => undefined);
      const location = res.headers.get("location");
      if (!location || redirects === MAX_REDIRECTS) {
        throw new ProviderError(
          location
            ? `output download redirected more than ${MAX_REDIRECTS} times`
            : `output download got HTTP ${res.status} without a Location`,
          "OUTPUT_DOWNLOAD_FAILED",
          true,
        );
      }
      current = new URL(location, current).href;
    }
  }
}

/** Whether a generation of `mediaType` may store a file of `contentType` (as sniffed). */
export function acceptsContentType(mediaType: MediaType, contentType: string): boolean {
  return ACCEPTED[mediaType].has(contentType);
}

/** The content type to store: the one the bytes' signature shows, if the media type takes it. */
function checkMedia(data: Buffer, label: string | undefined, mediaType: MediaType): string {
  const sniffed = sniffContentType(data);
  if (sniffed && ACCEPTED[mediaType].has(sniffed)) return sniffed;
  const seen = sniffed ?? `unrecognised bytes labelled ${mediaTypeOf(label) || "nothing"}`;
  throw new ProviderError(
    `output is ${seen}, not ${mediaType.toLowerCase()} media`,
    "INVALID_OUTPUT",
    true,
  );
}

/** `Image/PNG; charset=x` → `image/png`. */
function mediaTypeOf(label: string | undefined): string {
  return (label ?? "").split(";")[0]!.trim().toLowerCase();
}

function tooLarge(): ProviderError {
  // Not retryable: the same request would produce an output as large.
  return new ProviderError("output too large", "OUTPUT_TOO_LARGE", false);
}

/** The format the leading bytes show, or undefined for anything we do not store. */
export function sniffContentType(data: Buffer): string | undefined {
  const found = SIGNATURES.find(([, hex]) => matches(data, hex))?.[0];
  if (found === "image/png" && isAnimatedPng(data)) return "image/apng";
  if (found) return found;
  // An MP3 without an ID3 tag starts with a frame: 11 sync bits, then MPEG version and
  // layer bits, where layer III is 01 (layer 00 would be AAC in ADTS, which we do not store).
  if (data.length >= 2 && data[0] === 0xff && (data[1]! & 0xe6) === 0xe2) return "audio/mpeg";
  return undefined;
}

function matches(data: Buffer, hex: string): boolean {
  const bytes = hex.split(" ");
  if (data.length < bytes.length) return false;
  return bytes.every((b, i) => b === "??" || data[i] === parseInt(b, 16));
}

/** An APNG has an `acTL` chunk before its first `IDAT`; a still PNG does not. */
function isAnimatedPng(data: Buffer): boolean {
  let offset = 8;
  while (offset + 8 <= data.length) {
    const type = data.toString("latin1", offset + 4, offset + 8);
    if (type === "acTL") return true;
    if (type === "IDAT" || type === "IEND") return false;
    offset += 12 + data.readUInt32BE(offset);
  }
  return false;
}
