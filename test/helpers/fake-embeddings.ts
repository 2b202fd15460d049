import http from "node:http";
import type { AddressInfo } from "node:net";
import { deferred, type Deferred } from "../../src/common/deferred";

/**
 * An OpenAI-compatible embeddings server on 127.0.0.1: `POST /v1/embeddings` with OpenAI's
 * request checks (known model, `input` a string or a list of non-empty strings, `dimensions`
 * only for models that can shorten), its answer shape and its error envelope
 * `{error:{message, type, param, code}}`. Vectors are deterministic per text and deliberately
 * not unit length, as some local servers answer.
 */

export interface EmbeddingsRequest {
  headers: http.IncomingHttpHeaders;
  body: { model?: unknown; input?: unknown; dimensions?: unknown; [key: string]: unknown };
}

export interface FakeModel {
  dimensions: number;
  /** Accepts the `dimensions` request field (OpenAI's text-embedding-3 family). */
  shortens?: boolean;
}

type Injected =
  | { kind: "status"; status: number; body: string; headers?: Record<string, string> }
  | { kind: "hold"; arrived: Deferred<void>; release: Deferred<void> }
  | { kind: "transform"; transform: (answer: EmbeddingsAnswer) => unknown };

export interface EmbeddingsAnswer {
  object: "list";
  data: Array<{ object: "embedding"; index: number; embedding: number[] }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

export const DEFAULT_MODELS: Record<string, FakeModel> = {
  "text-embedding-3-small": { dimensions: 1536, shortens: true },
  "tiny-embed": { dimensions: 8 },
};

export class FakeEmbeddings {
  readonly requests: EmbeddingsRequest[] = [];
  url = "";
  /** Answer `data` in reverse order, as the API allows (clients must order by `index`). */
  reverseOrder = false;
  private readonly injected: Injected[] = [];
  private readonly server: http.Server;

  private constructor(
    private readonly apiKey: string | undefined,
    private readonly models: Record<string, FakeModel>,
  ) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  static async start(
    opts: { apiKey?: string; models?: Record<string, FakeModel> } = {},
  ): Promise<FakeEmbeddings> {
    const fake = new FakeEmbeddings(opts.apiKey, opts.models ?? DEFAULT_MODELS);
    await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The deterministic, not normalized vector this server gives `text`. */
  static vector(text: string, dimensions: number): number[] {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
    return Array.from({ length: dimensions }, (_, i) => {
      h = Math.imul(h ^ (h >>> 15), 2246822507) >>> 0;
      return ((h % 2000) - 1000) / 100 + (i === 0 ? 0.5 : 0);
    });
  }

  /** The next call answers this status and raw body (auth is checked first). */
  failNext(status: number, body: unknown, headers?: Record<string, string>): void {
    const text = typeof body === "string" ? body : JSON.stringify(body);
    this.injected.push({ kind: "status", status, body: text, headers });
  }

  /** The next successful answer passes through `transform` before it is sent. */
  alterNext(transform: (answer: EmbeddingsAnswer) => unknown): void {
    this.injected.push({ kind: "transform", transform });
  }

  /**
   * The next call is held without an answer: `arrived` resolves when it comes in; after
   * `release()` the connection is dropped.
   */
  holdNext(): { arrived: Promise<void>; release(): void } {
    const hold = { kind: "hold" as const, arrived: deferred(), release: deferred() };
    this.injected.push(hold);
    return { arrived: hold.arrived.promise, release: () => hold.release.resolve() };
  }

  reset(): void {
    this.requests.length = 0;
    this.injected.length = 0;
    this.reverseOrder = false;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve, reject) => this.server.close((e) => (e ? reject(e) : resolve())));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body: EmbeddingsRequest["body"];
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as EmbeddingsRequest["body"];
    } catch {
      return this.error(res, 400, "We could not parse the JSON body of your request.", null);
    }
    this.requests.push({ headers: req.headers, body });

    if (this.apiKey !== undefined && req.headers.authorization !== `Bearer ${this.apiKey}`) {
      // OpenAI masks the key it echoes; this echoes it whole, so clients prove they redact it.
      const shown = String(req.headers.authorization ?? "").replace(/^Bearer /, "");
      return this.error(
        res,
        401,
        `Incorrect API key provided: ${shown}.`,
        "invalid_api_key",
        "invalid_request_error",
      );
    }
    if (req.method !== "POST" || req.url !== "/v1/embeddings") {
      return this.error(res, 404, `Invalid URL (${req.method} ${req.url})`, null);
    }

    const injected = this.injected.shift();
    if (injected?.kind === "hold") {
      injected.arrived.resolve();
      await injected.release.promise;
      res.destroy();
      return;
    }
    if (injected?.kind === "status") {
      res.writeHead(injected.status, { "content-type": "application/json", ...injected.headers });
      res.end(injected.body);
      return;
    }

    const model = this.models[String(body.model)];
    if (!model) {
      return this.error(
        res,
        404,
        `The model \`${String(body.model)}\` does not exist.`,
        "model_not_found",
      );
    }
    const input = typeof body.input === "string" ? [body.input] : body.input;
    if (
      !Array.isArray(input) ||
      input.length === 0 ||
      input.length > 2048 ||
      !input.every((t) => typeof t === "string" && t.length > 0)
    ) {
      return this.error(res, 400, "'$.input' is invalid.", null, "invalid_request_error", "input");
    }
    let dimensions = model.dimensions;
    if (body.dimensions !== undefined) {
      if (!model.shortens) {
        return this.error(
          res,
          400,
          "This model does not support specifying dimensions.",
          null,
          "invalid_request_error",
          "dimensions",
        );
      }
      if (
        !Number.isInteger(body.dimensions) ||
        (body.dimensions as number) < 1 ||
        (body.dimensions as number) > model.dimensions
      ) {
        return this.error(res, 400, "Invalid value for 'dimensions'.", "invalid_value");
      }
      dimensions = body.dimensions as number;
    }

    const data = (input as string[]).map((text, index) => ({
      object: "embedding" as const,
      index,
      embedding: FakeEmbeddings.vector(text, dimensions),
    }));
    if (this.reverseOrder) data.reverse();
    const tokens = (input as string[]).reduce((n, t) => n + t.split(/\s+/).length, 0);
    const answer: EmbeddingsAnswer = {
      object: "list",
      data,
      model: String(body.model),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
    const sent = injected?.kind === "transform" ? injected.transform(answer) : answer;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(sent));
  }

  private error(
    res: http.ServerResponse,
    status: number,
    message: string,
    code: string | null,
    type = "invalid_request_error",
    param: string | null = null,
  ): void {
    res
      .writeHead(status, { "content-type": "application/json" })
      .end(JSON.stringify({ error: { message, type, param, code } }));
  }
}
