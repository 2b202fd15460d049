import { randomUUID } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import type { MediaType } from "../../src/entities";
import { OutputStoreService, sniffContentType } from "../../src/generation/output-store.service";
import type { ProviderOutput } from "../../src/providers";
import { renderAudio, renderImage, renderVideo } from "../../src/providers/simulated/sim-render";
import { LocalObjectStore, type ObjectStore } from "../../src/storage/object-store";
import { S3ObjectStore } from "../../src/storage/s3-object-store";
import { FAKE_S3_CREDENTIALS, startFakeS3, type FakeS3 } from "../helpers/fake-s3";

const MAX_BYTES = 16 * 1024;

const png = renderImage({ prompt: "a lighthouse", seed: 1, width: 8, height: 8 }).data;
const apng = renderVideo({
  prompt: "waves",
  seed: 2,
  width: 8,
  height: 8,
  durationSeconds: 1,
}).data;
const wav = renderAudio({ prompt: "a bell", seed: 3, durationSeconds: 0.05 }).data;
const html = Buffer.from("<!doctype html><html><body>Access denied</body></html>");

/** A provider CDN with every way a download can go wrong, on a free port. */
function cdnRoutes(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? "";
  const hop = /^\/hop\/(\d+)$/.exec(url);
  if (hop) {
    const left = Number(hop[1]);
    // Relative and absolute Locations both occur in the wild.
    res.writeHead(302, { location: left > 1 ? `/hop/${left - 1}` : `${origin}/png` });
    res.end();
    return;
  }
  switch (url) {
    case "/png":
      return send(res, "image/png", png);
    case "/wav":
      return send(res, "audio/wav", wav);
    case "/html":
      return send(res, "text/html; charset=utf-8", html);
    case "/json":
      return send(res, "application/json", Buffer.from('{"error":"expired"}'));
    case "/octet-png":
      return send(res, "application/octet-stream", png);
    case "/no-type-png":
      res.writeHead(200, { "content-length": png.length });
      res.end(png);
      return;
    case "/jpeg-labelled-png":
      return send(res, "image/jpeg", png);
    case "/html-labelled-png":
      return send(res, "image/png", html);
    case "/large":
      return send(res, "image/png", Buffer.concat([png, Buffer.alloc(MAX_BYTES)]));
    case "/large-chunked": {
      // No Content-Length: Node sends it chunked, so only counting the bytes can stop it.
      res.writeHead(200, { "content-type": "image/png" });
      res.write(png);
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(4096));
      res.end();
      return;
    }
    case "/gzip-bomb": {
      // Content-Length is the compressed size, well under the limit; fetch inflates it.
      const body = zlib.gzipSync(Buffer.concat([png, Buffer.alloc(MAX_BYTES * 4)]));
      res.writeHead(200, {
        "content-type": "image/png",
        "content-encoding": "gzip",
        "content-length": body.length,
      });
      res.end(body);
      return;
    }
    case "/to-file":
      res.writeHead(302, { location: "file:///etc/passwd" });
      res.end();
      return;
    case "/stall":
      // Headers and a first chunk, then nothing: only the timeout ends this download.
      res.writeHead(200, { "content-type": "image/png" });
      res.write(png.subarray(0, 8));
      return;
    default:
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
  }
}

function send(res: http.ServerResponse, contentType: string, body: Buffer): void {
  res.writeHead(200, { "content-type": contentType, "content-length": body.length });
  res.end(body);
}

let cdn: http.Server;
let origin: string;
let s3: FakeS3;
let root: string;
const s3Stores: S3ObjectStore[] = [];

beforeAll(async () => {
  cdn = http.createServer(cdnRoutes);
  await new Promise<void>((resolve) => cdn.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  s3 = await startFakeS3();
  root = fs.mkdtempSync(path.join(os.tmpdir(), "gengate-outputs-"));
});

afterAll(async () => {
  for (const store of s3Stores) store.close();
  cdn.closeAllConnections();
  await new Promise<void>((resolve) => cdn.close(() => resolve()));
  await s3.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface StoreUnderTest {
  store: ObjectStore;
  /** Keys stored for one generation. */
  keysOf(generationId: string): string[];
}

const stores: [string, () => StoreUnderTest][] = [
  [
    "LocalObjectStore",
    () => ({
      store: new LocalObjectStore(root),
      keysOf: (id) => {
        const dir = path.join(root, "generations", id);
        return fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => `generations/${id}/${f}`) : [];
      },
    }),
  ],
  [
    "S3ObjectStore",
    () => {
      const store = new S3ObjectStore({
        bucket: s3.bucket,
        endpoint: s3.url,
        ...FAKE_S3_CREDENTIALS,
      });
      s3Stores.push(store);
      return {
        store,
        keysOf: (id) => [...s3.objects.keys()].filter((k) => k.startsWith(`generations/${id}/`)),
      };
    },
  ],
];

describe.each(stores)("OutputStoreService into %s", (_name, make) => {
  let target: StoreUnderTest;
  let service: OutputStoreService;

  beforeAll(() => {
    target = make();
    service = new OutputStoreService(target.store, { maxBytes: MAX_BYTES, timeoutMs: 10_000 });
  });

  /** Stores one output for a fresh generation; returns the stored output and its object. */
  async function storeOne(output: ProviderOutput, mediaType: MediaType) {
    const id = randomUUID();
    const [stored] = await service.storeAll(id, 1, [output], mediaType);
    return { id, stored: stored!, object: await target.store.get(stored!.key) };
  }

  /** Expects the output refused with `code` for the reason `message` names, and nothing stored. */
  async function expectRefused(
    output: ProviderOutput,
    mediaType: MediaType,
    code: string,
    retryable: boolean,
    message: RegExp,
    svc = service,
  ) {
    const id = randomUUID();
    await expect(svc.storeAll(id, 1, [output], mediaType)).rejects.toMatchObject({
      name: "ProviderError",
      code,
      retryable,
      message: expect.stringMatching(message),
    });
    expect(target.keysOf(id)).toEqual([]);
  }

  it("stores a PNG download under its generation with its content type", async () => {
    const { id, stored, object } = await storeOne({ url: `${origin}/png` }, "IMAGE");

    expect(stored).toMatchObject({
      key: `generations/${id}/1-0.png`,
      contentType: "image/png",
      bytes: png.length,
    });
    expect(object).toEqual({ data: png, contentType: "image/png" });
  });

  it("follows a CDN's redirects up to three hops", async () => {
    const two = await storeOne({ url: `${origin}/hop/2` }, "IMAGE");
    const three = await storeOne({ url: `${origin}/hop/3` }, "IMAGE");

    expect(two.object?.data.equals(png)).toBe(true);
    expect(three.object?.data.equals(png)).toBe(true);
  });

  it("refuses a download that redirects four times", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/hop/4` },
      "IMAGE",
      "OUTPUT_DOWNLOAD_FAILED",
      true,
      /redirected more than 3 times/,
    );
  });

  it("refuses a redirect to something other than http(s)", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/to-file` },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /non-http\(s\) URL \(file:\)/,
    );
  });

  it("refuses an HTML page served with 200 as an invalid output another provider may fix", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/html` },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /text\/html, not a media file/,
    );
  });

  it("refuses a JSON body", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/json` },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /application\/json/,
    );
  });

  it("refuses HTML bytes even when labelled image/png", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/html-labelled-png` },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /unrecognised bytes labelled image\/png/,
    );
  });

  it("stores PNG bytes served as octet-stream, or with no type, as image/png", async () => {
    const octet = await storeOne({ url: `${origin}/octet-png` }, "IMAGE");
    const untyped = await storeOne({ url: `${origin}/no-type-png` }, "IMAGE");

    for (const { stored, object } of [octet, untyped]) {
      expect(stored.contentType).toBe("image/png");
      expect(stored.key).toMatch(/\/1-0\.png$/);
      expect(object).toEqual({ data: png, contentType: "image/png" });
    }
  });

  it("stores what the bytes are when the label names another image type", async () => {
    const { stored, object } = await storeOne({ url: `${origin}/jpeg-labelled-png` }, "IMAGE");

    expect(stored.contentType).toBe("image/png");
    expect(object?.contentType).toBe("image/png");
  });

  it("refuses a body whose honest Content-Length passes the limit, for good", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/large` },
      "IMAGE",
      "OUTPUT_TOO_LARGE",
      false,
      /too large/,
    );
  });

  it("refuses a chunked body without Content-Length once it passes the limit", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/large-chunked` },
      "IMAGE",
      "OUTPUT_TOO_LARGE",
      false,
      /too large/,
    );
  });

  it("refuses a gzip body whose Content-Length is small but which inflates past the limit", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/gzip-bomb` },
      "IMAGE",
      "OUTPUT_TOO_LARGE",
      false,
      /too large/,
    );
  });

  it("reports a 404 as a download failure worth retrying", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/missing` },
      "IMAGE",
      "OUTPUT_DOWNLOAD_FAILED",
      true,
      /HTTP 404/,
    );
  });

  it("reports a body that stalls past the timeout as a download failure worth retrying", async () => {
    expect.assertions(2);
    const impatient = new OutputStoreService(target.store, { maxBytes: MAX_BYTES, timeoutMs: 200 });
    await expectRefused(
      { url: `${origin}/stall` },
      "IMAGE",
      "OUTPUT_DOWNLOAD_FAILED",
      true,
      /timed out after 200 ms/,
      impatient,
    );
  });

  it("stores a WAV download for an AUDIO generation", async () => {
    const { stored, object } = await storeOne({ url: `${origin}/wav` }, "AUDIO");

    expect(stored.key).toMatch(/\/1-0\.wav$/);
    expect(object).toEqual({ data: wav, contentType: "audio/wav" });
  });

  it("refuses a PNG for an AUDIO generation", async () => {
    expect.assertions(2);
    await expectRefused(
      { url: `${origin}/png` },
      "AUDIO",
      "INVALID_OUTPUT",
      true,
      /image\/png, not audio media/,
    );
  });

  it("checks inline bytes the same way: an APNG is a video, a still PNG is not", async () => {
    expect.assertions(4);
    const { stored, object } = await storeOne({ data: apng, contentType: "image/apng" }, "VIDEO");
    expect(stored.key).toMatch(/\/1-0\.apng$/);
    expect(object).toEqual({ data: apng, contentType: "image/apng" });

    await expectRefused(
      { data: png, contentType: "image/png" },
      "VIDEO",
      "INVALID_OUTPUT",
      true,
      /image\/png, not video media/,
    );
  });

  it("refuses inline bytes that are not media, whatever their label", async () => {
    expect.assertions(6);
    await expectRefused(
      { data: html, contentType: "image/png" },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /unrecognised bytes/,
    );
    await expectRefused(
      { data: png, contentType: "text/html" },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /text\/html, not a media file/,
    );
    await expectRefused(
      { data: Buffer.alloc(0) },
      "IMAGE",
      "INVALID_OUTPUT",
      true,
      /unrecognised bytes labelled nothing/,
    );
  });

  it("refuses inline bytes over the limit", async () => {
    expect.assertions(2);
    await expectRefused(
      { data: Buffer.concat([png, Buffer.alloc(MAX_BYTES)]), contentType: "image/png" },
      "IMAGE",
      "OUTPUT_TOO_LARGE",
      false,
      /too large/,
    );
  });
});

describe("sniffContentType", () => {
  const hex = (s: string) => Buffer.from(s.replace(/ /g, ""), "hex");
  const ascii = (s: string) => Buffer.from(s, "latin1");

  it.each([
    ["image/png", png],
    ["image/apng", apng],
    ["audio/wav", wav],
    ["image/jpeg", hex("FF D8 FF E0 00 10 4A 46 49 46")],
    ["image/gif", ascii("GIF89a\x01\x00\x01\x00")],
    ["image/webp", ascii("RIFF\x24\x00\x00\x00WEBPVP8 ")],
    ["video/mp4", ascii("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00")],
    ["audio/mp4", ascii("\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00")],
    ["image/avif", ascii("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00")],
    ["video/webm", hex("1A 45 DF A3 9F 42 86 81")],
    ["audio/mpeg", ascii("ID3\x04\x00\x00")],
    ["audio/mpeg", hex("FF FB 90 64")], // MPEG-1 layer III frame, no ID3 tag
    ["audio/ogg", ascii("OggS\x00\x02")],
    ["audio/flac", ascii("fLaC\x00\x00\x00\x22")],
  ])("recognises %s", (type, bytes) => {
    expect(sniffContentType(bytes)).toBe(type);
  });

  it.each([
    ["HTML", html],
    ["JSON", ascii('{"error":"expired"}')],
    ["SVG (a script carrier when served back)", ascii('<svg xmlns="http://www.w3.org/2000/svg">')],
    ["AAC in ADTS (layer bits 00)", hex("FF F1 50 80")],
    ["a truncated PNG signature", hex("89 50 4E 47")],
    ["nothing", Buffer.alloc(0)],
  ])("recognises nothing in %s", (_what, bytes) => {
    expect(sniffContentType(bytes)).toBeUndefined();
  });
});
