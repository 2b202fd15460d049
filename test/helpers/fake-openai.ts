import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { deflateSync } from "node:zlib";

/**
 * An OpenAI stand-in on 127.0.0.1 for Images and Batch.
 *
 * Images: `POST /v1/images/generations` with the real request checks (model, size per model,
 * `response_format` for DALL·E only), the real answer shape (base64 PNG of the requested size)
 * and the real error envelope `{error:{message, type, param, code}}`. A prompt containing
 * `[refuse]` is refused as the safety system would.
 *
 * Files and Batch: `POST /v1/files` (multipart, `purpose=batch`), `GET /v1/files/{id}/content`,
 * `POST /v1/batches` (input file, `/v1/images/generations` only, `completion_window: "24h"`,
 * metadata limits), `GET /v1/batches` (newest first, `limit`, `after`, `has_more`),
 * `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel`. A batch moves only when the test
 * says so (`advance`, `finish`, `failBatch`, `finishCancel`): finishing runs each input line
 * through the same Images handler and writes the output and error files as OpenAI does.
 * Every call checks the API key first.
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** The JSON body; for a multipart upload its fields (a file as `{filename, contentType, content}`). */
  body: Record<string, unknown>;
}

interface InjectedResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  hang?: boolean;
}

export interface FakeFile {
  id: string;
  filename: string;
  purpose: string;
  content: Buffer;
  created_at: number;
}

export interface FakeBatch {
  id: string;
  object: "batch";
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: string;
  created_at: number;
  expires_at: number;
  output_file_id: string | null;
  error_file_id: string | null;
  errors: {
    object: "list";
    data: Array<{ code: string; message: string; line: number | null }>;
  } | null;
  metadata: Record<string, string> | null;
  request_counts: { total: number; completed: number; failed: number };
}

interface InputLine {
  custom_id: string;
  method: string;
  url: string;
  body: Record<string, unknown>;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

const SIZES: Record<string, string[]> = {
  "dall-e-2": ["256x256", "512x512", "1024x1024"],
  "dall-e-3": ["1024x1024", "1792x1024", "1024x1792"],
  "gpt-image-1": ["1024x1024", "1536x1024", "1024x1536", "auto"],
  "gpt-image-1-mini": ["1024x1024", "1536x1024", "1024x1536", "auto"],
  "gpt-image-1.5": ["1024x1024", "1536x1024", "1024x1536", "auto"],
};

const BATCH_ENDPOINTS = new Set(["/v1/images/generations"]);
const OPEN_STATUSES = new Set(["validating", "in_progress", "finalizing"]);

export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  readonly apiKey: string;
  /** Batches in creation order. */
  readonly batches: FakeBatch[] = [];
  readonly files = new Map<string, FakeFile>();
  url = "";
  private readonly injected: InjectedResponse[] = [];
  private readonly server: http.Server;
  private readonly pngs = new Map<string, Buffer>();
  private readonly created: FakeBatch[] = [];
  private readonly waiting: Array<(batch: FakeBatch) => void> = [];

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
    this.batches.length = 0;
    this.created.length = 0;
    this.files.clear();
  }

  /** Resolves with the next batch created through the API (at once if one is waiting). */
  nextBatch(): Promise<FakeBatch> {
    const ready = this.created.shift();
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  batch(id: string): FakeBatch {
    const batch = this.batches.find((b) => b.id === id);
    if (!batch) throw new Error(`no fake batch ${id}`);
    return batch;
  }

  /** A batch made elsewhere (another client of the organization), created at `createdAt` (s). */
  seedBatch(opts: { createdAt?: number; metadata?: Record<string, string> } = {}): FakeBatch {
    const created = opts.createdAt ?? nowSeconds();
    const batch = this.newBatch("file-seeded", opts.metadata ?? null, created, 0);
    batch.status = "completed";
    return batch;
  }

  /** Moves an open batch along (`in_progress`, `finalizing`), with `completed` requests done. */
  advance(id: string, status: "in_progress" | "finalizing", completed = 0): void {
    const batch = this.batch(id);
    batch.status = status;
    batch.request_counts.completed = completed;
  }

  /**
   * Runs the batch's requests and writes its files. `run` limits how many lines (in input
   * order) ran: the rest did not, as when the window passes (`expired`) or a cancel lands
   * (`cancelled`). `answers` replaces what the Images handler would answer for a custom id.
   */
  finish(
    id: string,
    opts: {
      status?: "completed" | "expired" | "cancelled";
      run?: number;
      answers?: Record<string, Answer>;
    } = {},
  ): void {
    const batch = this.batch(id);
    const lines = this.inputLines(batch);
    const status = opts.status ?? "completed";
    const output: string[] = [];
    const errors: string[] = [];
    lines.forEach((line, i) => {
      const lineId = `batch_req_${randomBytes(6).toString("hex")}`;
      if (opts.run !== undefined && i >= opts.run) {
        const [code, message] =
          status === "cancelled"
            ? ["batch_cancelled", "This request was not executed because the batch was cancelled."]
            : [
                "batch_expired",
                "This request could not be executed before the completion window expired.",
              ];
        errors.push(
          JSON.stringify({
            id: lineId,
            custom_id: line.custom_id,
            response: null,
            error: { code, message },
          }),
        );
        return;
      }
      const answer = opts.answers?.[line.custom_id] ?? this.imagesAnswer(line.body);
      const record = JSON.stringify({
        id: lineId,
        custom_id: line.custom_id,
        response: {
          status_code: answer.status,
          request_id: `req_${randomBytes(6).toString("hex")}`,
          body: answer.body,
        },
        error: null,
      });
      if (answer.status < 300) output.push(record);
      else errors.push(record);
    });
    batch.status = status;
    batch.request_counts = { total: lines.length, completed: output.length, failed: errors.length };
    if (output.length > 0) batch.output_file_id = this.storeFile("batch_output", output).id;
    if (errors.length > 0) batch.error_file_id = this.storeFile("batch_output", errors).id;
  }

  /** The batch is refused as a whole, as validation refuses a bad input file. */
  failBatch(id: string, message = "The input file is invalid."): void {
    const batch = this.batch(id);
    batch.status = "failed";
    batch.errors = { object: "list", data: [{ code: "invalid_file", message, line: null }] };
  }

  /** A cancelling batch ends `cancelled`, with the first `run` requests done. */
  finishCancel(id: string, run = 0): void {
    this.finish(id, { status: "cancelled", run });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve, reject) => this.server.close((e) => (e ? reject(e) : resolve())));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const contentType = req.headers["content-type"] ?? "";
    let body: Record<string, unknown> = {};
    if (contentType.startsWith("multipart/form-data")) {
      const parts = parseMultipart(raw, contentType);
      if (!parts) return this.error(res, 400, "Could not parse the multipart body.", null);
      body = parts;
    } else {
      try {
        body = JSON.parse(raw.toString("utf8") || "{}") as Record<string, unknown>;
      } catch {
        return this.error(res, 400, "We could not parse the JSON body of your request.", null);
      }
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
    const url = new URL(req.url ?? "/", "http://fake");
    const route = `${req.method} ${url.pathname}`;
    if (route === "POST /v1/images/generations") {
      const answer = this.imagesAnswer(body);
      return this.json(res, answer.status, answer.body);
    }
    if (route === "POST /v1/files") return this.upload(res, body);
    if (route === "POST /v1/batches") return this.createBatch(res, body);
    if (route === "GET /v1/batches") return this.listBatches(res, url.searchParams);
    const file = /^GET \/v1\/files\/([^/]+)\/content$/.exec(route);
    if (file) {
      const found = this.files.get(decodeURIComponent(file[1]!));
      if (!found) return this.error(res, 404, `No such File object: ${file[1]}`, null);
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(found.content);
      return;
    }
    const batchRoute = /^(GET|POST) \/v1\/batches\/([^/]+)(\/cancel)?$/.exec(route);
    if (batchRoute && (batchRoute[1] === "GET") !== Boolean(batchRoute[3])) {
      const batch = this.batches.find((b) => b.id === decodeURIComponent(batchRoute[2]!));
      if (!batch) return this.error(res, 404, `No batch found with id '${batchRoute[2]}'.`, null);
      if (batchRoute[3]) {
        if (!OPEN_STATUSES.has(batch.status)) {
          return this.error(res, 400, `Cannot cancel a batch with status '${batch.status}'.`, null);
        }
        batch.status = "cancelling";
      }
      return this.json(res, 200, batch);
    }
    return this.error(res, 404, `Invalid URL (${req.method} ${req.url})`, null);
  }

  private upload(res: http.ServerResponse, body: Record<string, unknown>): void {
    const file = body.file as { filename?: string; content?: string } | undefined;
    if (body.purpose !== "batch") {
      return this.error(
        res,
        400,
        "Invalid purpose.",
        "invalid_value",
        "invalid_request_error",
        "purpose",
      );
    }
    if (!file?.content || !file.filename) {
      return this.error(
        res,
        400,
        "Missing file.",
        "missing_required_parameter",
        "invalid_request_error",
        "file",
      );
    }
    const stored = this.storeFile("batch", file.content, file.filename);
    this.json(res, 200, {
      id: stored.id,
      object: "file",
      bytes: stored.content.length,
      created_at: stored.created_at,
      filename: stored.filename,
      purpose: stored.purpose,
    });
  }

  private createBatch(res: http.ServerResponse, body: Record<string, unknown>): void {
    const invalid = (message: string, param: string) =>
      this.error(res, 400, message, "invalid_value", "invalid_request_error", param);
    const input = this.files.get(String(body.input_file_id ?? ""));
    if (!input || input.purpose !== "batch") return invalid("No such input file.", "input_file_id");
    if (!BATCH_ENDPOINTS.has(String(body.endpoint)))
      return invalid("Invalid endpoint.", "endpoint");
    if (body.completion_window !== "24h")
      return invalid("Invalid completion window.", "completion_window");
    const metadata = (body.metadata ?? null) as Record<string, unknown> | null;
    if (metadata) {
      const entries = Object.entries(metadata);
      const ok =
        entries.length <= 16 &&
        entries.every(([k, v]) => k.length <= 64 && typeof v === "string" && v.length <= 512);
      if (!ok) return invalid("Invalid metadata.", "metadata");
    }
    const lines = input.content
      .toString("utf8")
      .split("\n")
      .filter((l) => l.trim());
    const batch = this.newBatch(
      input.id,
      metadata as Record<string, string> | null,
      nowSeconds(),
      lines.length,
    );
    batch.endpoint = String(body.endpoint);
    // Validation as OpenAI does it, after the create: a bad line fails the whole batch.
    const ids = new Set<string>();
    lines.forEach((text, i) => {
      let line: Partial<InputLine> = {};
      try {
        line = JSON.parse(text) as Partial<InputLine>;
      } catch {
        // Reported below.
      }
      const bad =
        typeof line.custom_id !== "string" ||
        ids.has(line.custom_id) ||
        line.method !== "POST" ||
        line.url !== batch.endpoint ||
        typeof line.body !== "object";
      if (bad && !batch.errors) {
        batch.status = "failed";
        batch.errors = {
          object: "list",
          data: [{ code: "invalid_request", message: `Line ${i + 1} is invalid.`, line: i + 1 }],
        };
      }
      if (typeof line.custom_id === "string") ids.add(line.custom_id);
    });
    const waiter = this.waiting.shift();
    if (waiter) waiter(batch);
    else this.created.push(batch);
    this.json(res, 200, batch);
  }

  private listBatches(res: http.ServerResponse, query: URLSearchParams): void {
    const limit = Number(query.get("limit") ?? 20);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return this.error(
        res,
        400,
        "Invalid limit.",
        "invalid_value",
        "invalid_request_error",
        "limit",
      );
    }
    // Newest first; of batches created in the same second, the later one first.
    const newestFirst = this.batches
      .map((b, i) => ({ b, i }))
      .sort((x, y) => y.b.created_at - x.b.created_at || y.i - x.i)
      .map(({ b }) => b);
    const after = query.get("after");
    const from = after ? newestFirst.findIndex((b) => b.id === after) + 1 : 0;
    const data = newestFirst.slice(from, from + limit);
    this.json(res, 200, {
      object: "list",
      data,
      first_id: data[0]?.id ?? null,
      last_id: data.at(-1)?.id ?? null,
      has_more: from + limit < newestFirst.length,
    });
  }

  private newBatch(
    inputFileId: string,
    metadata: Record<string, string> | null,
    createdAt: number,
    total: number,
  ): FakeBatch {
    const batch: FakeBatch = {
      id: `batch_${randomBytes(12).toString("hex")}`,
      object: "batch",
      endpoint: "/v1/images/generations",
      input_file_id: inputFileId,
      completion_window: "24h",
      status: "validating",
      created_at: createdAt,
      expires_at: createdAt + 86400,
      output_file_id: null,
      error_file_id: null,
      errors: null,
      metadata,
      request_counts: { total, completed: 0, failed: 0 },
    };
    this.batches.push(batch);
    return batch;
  }

  private inputLines(batch: FakeBatch): InputLine[] {
    const input = this.files.get(batch.input_file_id);
    if (!input) return [];
    return input.content
      .toString("utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as InputLine);
  }

  private storeFile(purpose: string, content: string | string[], filename?: string): FakeFile {
    const id = `file-${randomBytes(12).toString("hex")}`;
    const text = Array.isArray(content) ? `${content.join("\n")}\n` : content;
    const file: FakeFile = {
      id,
      filename: filename ?? `${id}.jsonl`,
      purpose,
      content: Buffer.from(text, "utf8"),
      created_at: nowSeconds(),
    };
    this.files.set(id, file);
    return file;
  }

  /** What `POST /v1/images/generations` answers for this body. */
  private imagesAnswer(body: Record<string, unknown>): Answer {
    const model = String(body.model ?? "dall-e-2");
    const sizes = SIZES[model];
    if (!sizes) {
      return errorAnswer(404, `The model \`${model}\` does not exist.`, "model_not_found");
    }
    const isDallE = model.startsWith("dall-e");
    if (!isDallE && body.response_format !== undefined) {
      return errorAnswer(
        400,
        "Unknown parameter: 'response_format'.",
        "unknown_parameter",
        "invalid_request_error",
        "response_format",
      );
    }
    const size = String(body.size ?? "1024x1024");
    if (!sizes.includes(size)) {
      return errorAnswer(
        400,
        `Invalid size '${size}'.`,
        "invalid_value",
        "invalid_request_error",
        "size",
      );
    }
    if (typeof body.prompt !== "string" || !body.prompt) {
      return errorAnswer(
        400,
        "Missing required parameter: 'prompt'.",
        "missing_required_parameter",
        "invalid_request_error",
        "prompt",
      );
    }
    if (body.prompt.includes("[refuse]")) {
      return isDallE
        ? errorAnswer(
            400,
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
            "invalid_request_error",
          )
        : errorAnswer(
            400,
            "Your request was rejected by the safety system.",
            "moderation_blocked",
            "image_generation_user_error",
          );
    }
    if (isDallE && body.response_format !== "b64_json") {
      return {
        status: 200,
        body: { created: 1, data: [{ url: "https://example.invalid/image.png" }] },
      };
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
    return { status: 200, body: answer };
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

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function errorAnswer(
  status: number,
  message: string,
  code: string | null,
  type = "invalid_request_error",
  param: string | null = null,
): Answer {
  return { status, body: { error: { message, type, param, code } } };
}

/** The fields of a `multipart/form-data` body; a file as `{filename, contentType, content}`. */
function parseMultipart(raw: Buffer, contentType: string): Record<string, unknown> | null {
  const match = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!match) return null;
  const boundary = Buffer.from(`--${match[1] ?? match[2]}`);
  const fields: Record<string, unknown> = {};
  let at = raw.indexOf(boundary);
  if (at < 0) return null;
  for (;;) {
    const start = at + boundary.length;
    if (raw.subarray(start, start + 2).toString() === "--") return fields;
    const next = raw.indexOf(boundary, start);
    if (next < 0) return null;
    // Each part: CRLF, headers, CRLF CRLF, content, CRLF, then the next boundary.
    const part = raw.subarray(start + 2, next - 2);
    const split = part.indexOf("\r\n\r\n");
    if (split < 0) return null;
    const headers = part.subarray(0, split).toString("utf8");
    const content = part.subarray(split + 4);
    const name = /;\s*name="([^"]*)"/i.exec(headers)?.[1];
    const filename = /;\s*filename="([^"]*)"/i.exec(headers)?.[1];
    const type = /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1];
    if (name !== undefined) {
      fields[name] =
        filename !== undefined
          ? { filename, contentType: type, content: content.toString("utf8") }
          : content.toString("utf8");
    }
    at = next;
  }
}

/**
 * An 8-bit grayscale PNG (a gradient), encoded by hand: pngjs's encoder needs tens of seconds for the
 * 1792-pixel sizes, which a fake answering in milliseconds cannot afford.
 */
function encodeGrayPng(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // colour type: grayscale
  // Each scanline: filter byte 0, then one byte per pixel: a diagonal gradient, since the
  // quality gate refuses a flat or black picture as a real provider's failure.
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = (x + y) & 0xff;
  }
  const pixels = deflateSync(raw);
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
