/*
 * The OpenAI embeddings API, `POST /v1/embeddings`, as OpenAI, Ollama, vLLM and Hugging Face
 * TEI serve it. Request `{model, input: string[], dimensions?}`; answer
 * `{object: "list", data: [{object: "embedding", index, embedding: number[]}], model, usage}`.
 * OpenAI takes at most 2048 inputs per call and rejects empty strings; `dimensions` is only
 * accepted by models that can shorten their vectors (text-embedding-3 and later), so it is sent
 * only when asked for. Errors come as `{error: {message, type, param, code}}` (OpenAI, vLLM) or
 * `{error: "…"}` (Ollama, TEI).
 */
import { type Embedder, EmbedderError, normalizeL2 } from "./embedder";

export interface OpenAiCompatibleEmbedderOptions {
  /**
   * Server root, e.g. `https://api.openai.com` or `http://127.0.0.1:11434`; a trailing `/v1` is
   * accepted too, as OpenAI's own SDKs spell it.
   */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <key>` when set; local servers usually need none. */
  apiKey?: string;
  /** Model name as the server knows it, e.g. `text-embedding-3-small` or `nomic-embed-text`. */
  model: string;
  /** Length of the vectors the model returns; answers of another length are refused. */
  dimensions: number;
  /**
   * Ask the server to shorten vectors to `dimensions` (the `dimensions` request field). Only
   * models trained for it accept it. @defaultValue false
   */
  requestDimensions?: boolean;
  /** Deadline of one HTTP call. The cache waits on it before answering, so keep it short. @defaultValue 5000 */
  timeoutMs?: number;
  /** Most texts in one call; more are split into consecutive calls. @defaultValue 32 */
  maxBatch?: number;
}

interface EmbeddingsAnswer {
  data?: Array<{ index?: unknown; embedding?: unknown }>;
}

const DEFAULT_TIMEOUT_MS = 5_000;
// TEI's default `--max-client-batch-size`; OpenAI allows 2048.
const DEFAULT_MAX_BATCH = 32;

/**
 * A remote embedding model behind the OpenAI-compatible API. Vectors are checked (one per text,
 * placed by `index`, the configured length, finite numbers) and L2-normalized here, whatever
 * the server does.
 *
 * Failures throw `EmbedderError` at once, without retrying: the cache treats a failed lookup as
 * a miss, and a retry would only delay the generation waiting behind it. Rate limits (429),
 * server errors (5xx), timeouts and network errors are marked retryable; other 4xx answers
 * (bad key, unknown model, rejected input) are not.
 */
export class OpenAiCompatibleEmbedder implements Embedder {
  readonly id: string;
  readonly dimensions: number;
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly maxBatch: number;

  constructor(private readonly opts: OpenAiCompatibleEmbedderOptions) {
    let base: URL | undefined;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      // Reported below.
    }
    if (base?.protocol !== "http:" && base?.protocol !== "https:") {
      throw new Error(`Embedder baseUrl is not an http(s) URL: "${opts.baseUrl}".`);
    }
    if (!opts.model) throw new Error("Embedder model is empty: name the embedding model.");
    if (!Number.isInteger(opts.dimensions) || opts.dimensions < 1) {
      throw new Error(
        `Embedder dimensions must be a positive whole number (the model's vector length), not ${opts.dimensions}.`,
      );
    }
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!(this.timeoutMs > 0)) throw new Error("Embedder timeoutMs must be positive.");
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) {
      throw new Error("Embedder maxBatch must be a positive whole number.");
    }
    this.url = `${base.toString().replace(/\/+$/, "").replace(/\/v1$/, "")}/v1/embeddings`;
    this.dimensions = opts.dimensions;
    this.id = `openai-compatible:${opts.model}:${opts.dimensions}`;
  }

  async embed(texts: string[]): Promise<number[][]> {
    const vectors: number[][] = [];
    for (let start = 0; start < texts.length; start += this.maxBatch) {
      vectors.push(...(await this.call(texts.slice(start, start + this.maxBatch))));
    }
    return vectors;
  }

  private async call(input: string[]): Promise<number[][]> {
    const body: Record<string, unknown> = { model: this.opts.model, input };
    if (this.opts.requestDimensions) body.dimensions = this.dimensions;
    const headers: Record<string, string> = {
      accept: "application/json",
      "content-type": "application/json",
    };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;

    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: "error",
      });
      text = await res.text();
    } catch (err) {
      const e = err as Error;
      const reason =
        e.name === "TimeoutError"
          ? `no answer within ${this.timeoutMs} ms`
          : `request failed (${causeOf(e)})`;
      throw new EmbedderError(`${this.where()}: ${reason}`, true, { cause: err });
    }

    let answer: unknown;
    try {
      answer = text ? JSON.parse(text) : undefined;
    } catch {
      answer = undefined;
    }
    if (!res.ok) {
      const detail = this.redact(errorDetail(answer) ?? text.slice(0, 300));
      const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
      throw new EmbedderError(
        `${this.where()}: HTTP ${res.status}${detail ? `: ${detail}` : ""}`,
        retryable,
      );
    }
    if (answer === undefined) throw new EmbedderError(`${this.where()}: answer is not JSON`, false);
    return this.vectors(answer as EmbeddingsAnswer, input.length);
  }

  /** Some servers echo the key in their error message. */
  private redact(message: string): string {
    const key = this.opts.apiKey;
    return key ? message.split(key).join("[api key]") : message;
  }

  /**
   * One checked, normalized vector per input, in input order. An answer we cannot use is not
   * retryable: the same server would answer the same way.
   */
  private vectors(answer: EmbeddingsAnswer, count: number): number[][] {
    const bad = (why: string) => new EmbedderError(`${this.where()}: ${why}`, false);
    if (!Array.isArray(answer.data)) throw bad("answer has no `data` list");
    if (answer.data.length !== count) {
      throw bad(`answer has ${answer.data.length} embeddings for ${count} inputs`);
    }
    const vectors = new Array<number[] | undefined>(count);
    answer.data.forEach((item, position) => {
      // Every server we know sets `index`; without one, the position is the only order there is.
      const index = item?.index ?? position;
      if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= count) {
        throw bad(`embedding ${position} has index ${String(index)}, outside 0..${count - 1}`);
      }
      if (vectors[index as number]) throw bad(`index ${String(index)} appears twice`);
      const embedding = item?.embedding;
      if (!Array.isArray(embedding)) throw bad(`embedding ${String(index)} is not a list`);
      if (embedding.length !== this.dimensions) {
        throw bad(
          `embedding ${String(index)} has ${embedding.length} dimensions, expected ${this.dimensions}` +
            " (check the model and the dimensions setting)",
        );
      }
      if (!embedding.every((x) => typeof x === "number" && Number.isFinite(x))) {
        throw bad(`embedding ${String(index)} holds something other than finite numbers`);
      }
      const vector = embedding as number[];
      if (!normalizeL2(vector)) throw bad(`embedding ${String(index)} is all zeros`);
      vectors[index as number] = vector;
    });
    return vectors as number[][];
  }

  /** Names the server and model in messages; never the key. */
  private where(): string {
    return `embeddings ${this.opts.model} at ${new URL(this.url).host}`;
  }
}

/** A fetch failure's own reason: undici hides it (ECONNREFUSED, …) in `cause`. */
function causeOf(err: Error): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? err.message;
}

/** `{error: {message}}` (OpenAI, vLLM), `{error: "…"}` (Ollama, TEI) or `{message}`. */
function errorDetail(body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const b = body as { error?: unknown; message?: unknown };
  const message =
    typeof b.error === "string"
      ? b.error
      : typeof (b.error as { message?: unknown } | undefined)?.message === "string"
        ? (b.error as { message: string }).message
        : typeof b.message === "string"
          ? b.message
          : undefined;
  return message?.slice(0, 300);
}
