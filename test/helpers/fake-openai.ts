import http from "node:http";
import type { AddressInfo } from "node:net";
import { deflateSync } from "node:zlib";

/**
 * An OpenAI Images stand-in on 127.0.0.1: `POST /v1/images/generations` with the real request
 * checks (model, size per model, `response_format` for DALL·E only), the real answer shape
 * (base64 PNG of the requested size) and the real error envelope `{error:{message, type, param,
 * code}}`. A prompt containing `[refuse]` is refused as the safety system would.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

interface InjectedResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  hang?: boolean;
}

const SIZES: Record<string, string[]> = {
  "dall-e-2": ["256x256", "512x512", "1024x1024"],
  "dall-e-3": ["1024x1024", "1792x1024", "1024x1792"],
  "gpt-image-1": ["1024x1024", "1536x1024", "1024x1536", "auto"],
  "gpt-image-1-mini": ["1024x1024", "1536x1024", "1024x1536", "auto"],
};

export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  readonly apiKey: string;
  url = "";
  private readonly injected: InjectedResponse[] = [];
  private readonly server: http.Server;
  private readonly pngs = new Map<string, Buffer>();

  private constructor(apiKey: string) {
    this.apiKey = apiKey;
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  static async start(opts: { apiKey?: string } = {}): Promise<FakeOpenAI> {
    const fake = new FakeOpenAI(opts.apiKey ?? "sk-test-key");
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}/v1`;
    return fake;
  }

  /** The next call answers this instead (auth is still checked first). */
  failNext(status: number, body?: unknown, headers?: Record<string, string>): void {
    this.injected.push({ status, body, headers });
  }

  /** The next call never answers. */
  hangNext(): void {
    this.injected.push({ status: 0, hang: true });
  }

  reset(): void {
    this.requests.length = 0;
    this.injected.length = 0;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve, reject) => this.server.close((e) => (e ? reject(e) : resolve())));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
    } catch {
      return this.error(res, 400, "We could not parse the JSON body of your request.", null);
    }
    this.requests.push({
      method: req.method ?? "GET",
      path: req.url ?? "/",
      headers: req.headers,
      body,
    });

    if (req.headers.authorization !== `Bearer ${this.apiKey}`) {
      return this.error(
        res,
        401,
        "Incorrect API key provided.",
        "invalid_api_key",
        "invalid_request_error",
      );
    }
    const injected = this.injected.shift();
    if (injected?.hang) return;
    if (injected) {
      res.writeHead(injected.status, { "content-type": "application/json", ...injected.headers });
      res.end(injected.body === undefined ? "" : JSON.stringify(injected.body));
      return;
    }
    if (req.method !== "POST" || req.url !== "/v1/images/generations") {
      return this.error(res, 404, `Invalid URL (${req.method} ${req.url})`, null);
    }

    const model = String(body.model ?? "dall-e-2");
    const sizes = SIZES[model];
    if (!sizes) {
      return this.error(res, 404, `The model \`${model}\` does not exist.`, "model_not_found");
    }
    const isDallE = model.startsWith("dall-e");
    if (!isDallE && body.response_format !== undefined) {
      return this.error(
        res,
        400,
        "Unknown parameter: 'response_format'.",
        "unknown_parameter",
        "invalid_request_error",
        "response_format",
      );
    }
    const size = String(body.size ?? "1024x1024");
    if (!sizes.includes(size)) {
      return this.error(
        res,
        400,
        `Invalid size '${size}'.`,
        "invalid_value",
        "invalid_request_error",
        "size",
      );
    }
    if (typeof body.prompt !== "string" || !body.prompt) {
      return this.error(
        res,
        400,
        "Missing required parameter: 'prompt'.",
        "missing_required_parameter",
        "invalid_request_error",
        "prompt",
      );
    }
    if (body.prompt.includes("[refuse]")) {
      return isDallE
        ? this.error(
            res,
            400,
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
            "invalid_request_error",
          )
        : this.error(
            res,
            400,
            "Your request was rejected by the safety system.",
            "moderation_blocked",
            "image_generation_user_error",
          );
    }
    if (isDallE && body.response_format !== "b64_json") {
      const answer = { created: 1, data: [{ url: "https://example.invalid/image.png" }] };
      return this.json(res, 200, answer);
    }
    const [w, h] = (size === "auto" ? "1024x1024" : size).split("x").map(Number) as [
      number,
      number,
    ];
    const image: Record<string, string> = { b64_json: this.png(w, h).toString("base64") };
    if (model === "dall-e-3") image.revised_prompt = `${body.prompt} (revised)`;
    const answer: Record<string, unknown> = {
      created: Math.floor(Date.now() / 1000),
      data: [image],
    };
    if (!isDallE) {
      answer.usage = {
        input_tokens: 10,
        input_tokens_details: { text_tokens: 10, image_tokens: 0 },
        output_tokens: 1056,
        total_tokens: 1066,
      };
    }
    return this.json(res, 200, answer);
  }

  private png(width: number, height: number): Buffer {
    const key = `${width}x${height}`;
    let png = this.pngs.get(key);
    if (!png) {
      png = encodeGrayPng(width, height);
      this.pngs.set(key, png);
    }
    return png;
  }

  private error(
    res: http.ServerResponse,
    status: number,
    message: string,
    code: string | null,
    type = "invalid_request_error",
    param: string | null = null,
  ): void {
    this.json(res, status, { error: { message, type, param, code } });
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  }
}

/**
 * A black 8-bit grayscale PNG, encoded by hand: pngjs's encoder needs tens of seconds for the
 * 1792-pixel sizes, which a fake answering in milliseconds cannot afford.
 */
function encodeGrayPng(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // colour type: grayscale
  // Each scanline: filter byte 0, then one zero byte per pixel.
  const pixels = deflateSync(Buffer.alloc((width + 1) * height));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", pixels),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length, 0);
  const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body), 0);
  return Buffer.concat([length, body, crc]);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
