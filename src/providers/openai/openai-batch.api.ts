/*
 * OpenAI's Batch API for `/v1/images/generations`. Sources (read through the search tool):
 * - Batch object, statuses (`validating, failed, in_progress, finalizing, completed, expired,
 *   cancelling, cancelled`), `request_counts`, `output_file_id`, `error_file_id`, `metadata`
 *   (16 pairs, keys ≤ 64 and values ≤ 512 characters), create `{input_file_id, endpoint,
 *   completion_window: "24h", metadata}`, retrieve, cursor list (`limit` 1-100, `after`,
 *   `has_more`), cancel (`cancelling` for up to 10 minutes, then `cancelled` with partial
 *   results in the output file): openai/openai-node `src/resources/batches.ts`; the endpoint
 *   enum lists `/v1/images/generations` (https://platform.openai.com/docs/api-reference/batch/create).
 * - Files: `POST /v1/files` multipart with `purpose=batch` (JSONL, ≤ 50,000 requests, ≤ 200 MB),
 *   `GET /v1/files/{id}/content`: openai/openai-node `src/resources/files.ts`.
 * - Input line `{custom_id, method: "POST", url, body}` (body as for the synchronous endpoint);
 *   output and error lines `{id, custom_id, response: {status_code, request_id, body} | null,
 *   error: {code, message} | null}`: the OpenAPI `BatchRequestOutput`. An expired batch keeps
 *   its finished responses in the output file and writes each request it did not run to the
 *   error file with `error.code = "batch_expired"` (Batch guide, "Batch expiration").
 * - Price: half the synchronous price (Batch guide; OpenAI's pricing page). The answers report
 *   token usage, never a price, so the price is the list price less the discount.
 */
import {
  ProviderError,
  ProviderErrorCode,
  type BatchItem,
  type BatchState,
  type FinishedJobState,
  type ProviderBatchApi,
} from "../provider.adapter";
import { providerFetch } from "../provider.http";
import {
  imageOutput,
  imagePrice,
  imagesCall,
  openAIError,
  type ImagesResponse,
  type OpenAIErrorBody,
} from "./openai-images.request";

export interface OpenAIBatchOptions {
  /** The provider's name in errors. @defaultValue "openai" */
  name?: string;
  apiKey: string;
  /** Without a trailing slash, e.g. "https://api.openai.com/v1". */
  baseUrl: string;
  organization?: string;
  /** Deadline of one JSON call. @defaultValue 30000 */
  timeoutMs?: number;
  /** Deadline of an input upload or of reading a result file. @defaultValue 300000 */
  fileTimeoutMs?: number;
  /**
   * Most requests in one batch. The output file holds every image base64-encoded (a 1024²
   * PNG is about 2 MB), and all of a batch's results are held in memory at once.
   * @defaultValue 100
   */
  maxItems?: number;
  /** Pages of 100 batches searched for an earlier submission of the same batch. @defaultValue 10 */
  searchPages?: number;
}

/** What a batch is sent to, as the Batch API names it. */
const ENDPOINT = "/v1/images/generations";
const COMPLETION_WINDOW = "24h";
const COMPLETION_WINDOW_MS = 24 * 3600_000;
/**
 * OpenAI moves a batch to `expired` (with its partial results) once the window has passed;
 * the hour on top leaves it time to, so gengate's own deadline is only a backstop for a batch
 * that never reports an end.
 */
const DEADLINE_MS = COMPLETION_WINDOW_MS + 3600_000;
/** Metadata naming gengate's batch: what a repeated submission looks for. */
const BATCH_KEY = "gengate_batch_id";
/** Metadata naming the provider model, so results can be priced without the input file. */
const MODEL_KEY = "gengate_model";
/** Clocks differ: a batch created this long before gengate collected its own still counts. */
const CLOCK_SKEW_MS = 10 * 60_000;

interface OpenAIBatch {
  id: string;
  status: string;
  created_at?: number;
  output_file_id?: string | null;
  error_file_id?: string | null;
  metadata?: Record<string, string> | null;
  request_counts?: { total: number; completed: number; failed: number } | null;
  errors?: { data?: Array<{ code?: string; message?: string; line?: number | null }> } | null;
}

interface BatchList {
  data?: OpenAIBatch[];
  has_more?: boolean;
}

interface OutputLine {
  custom_id?: string;
  response?: { status_code: number; body?: ImagesResponse & OpenAIErrorBody } | null;
  error?: { code?: string; message?: string } | null;
}

/**
 * OpenAI's Batch API behind gengate's batch contract. A submission uploads the items as a
 * JSONL file, each line the body the synchronous adapter would send, and creates a batch on
 * it for `/v1/images/generations` within the 24 h window.
 *
 * OpenAI takes no idempotency key for batches. Instead the batch carries gengate's batch id in
 * its metadata, and `submit` first looks through the organization's batches (newest first,
 * back to when gengate collected the batch) for one already made. That closes the usual gap (a
 * worker that died after OpenAI answered, before the id was recorded; a create whose answer
 * was lost) but not all of it: two submissions running at the same moment both find nothing,
 * and a batch past the searched pages is not found. A submission interrupted between upload
 * and create leaves its input file unused at OpenAI.
 */
export class OpenAIBatchApi implements ProviderBatchApi {
  readonly discount = 0.5;
  readonly maxItems: number;
  readonly deadlineMs = DEADLINE_MS;
  private readonly provider: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly opts: OpenAIBatchOptions) {
    this.provider = opts.name ?? "openai";
    this.maxItems = opts.maxItems ?? 100;
    this.headers = { authorization: `Bearer ${opts.apiKey}` };
    if (opts.organization) this.headers["openai-organization"] = opts.organization;
  }

  async submit(
    items: BatchItem[],
    opts: { model: string; idempotencyKey: string; collectedAt?: Date },
  ): Promise<{ providerBatchId: string; pollAfterMs?: number }> {
    // Built first: a request OpenAI cannot take is refused before anything is sent.
    const lines = items.map((item) =>
      JSON.stringify({
        custom_id: item.customId,
        method: "POST",
        url: ENDPOINT,
        body: imagesCall(this.provider, item.request).body,
      }),
    );
    const existing = await this.findSubmitted(opts.idempotencyKey, opts.collectedAt);
    if (existing) return { providerBatchId: existing.id };

    const form = new FormData();
    form.append("purpose", "batch");
    form.append(
      "file",
      new Blob([`${lines.join("\n")}\n`], { type: "application/jsonl" }),
      `gengate-batch-${opts.idempotencyKey}.jsonl`,
    );
    const file = await this.call<{ id?: string }>("POST", "/files", {
      body: form,
      timeoutMs: this.opts.fileTimeoutMs ?? 300_000,
    });
    if (!file?.id) throw this.malformed("file upload answer has no id");
    const batch = await this.call<OpenAIBatch>("POST", "/batches", {
      json: {
        input_file_id: file.id,
        endpoint: ENDPOINT,
        completion_window: COMPLETION_WINDOW,
        metadata: { [BATCH_KEY]: opts.idempotencyKey, [MODEL_KEY]: opts.model.slice(0, 512) },
      },
    });
    if (!batch?.id) throw this.malformed("batch answer has no id");
    return { providerBatchId: batch.id };
  }

  async getStatus(providerBatchId: string): Promise<BatchState> {
    const batch = await this.call<OpenAIBatch>(
      "GET",
      `/batches/${encodeURIComponent(providerBatchId)}`,
      { notFound: "null" },
    );
    if (!batch) {
      // Lost at OpenAI: none of its results will come, so its requests may run elsewhere.
      return {
        status: "failed",
        error: new ProviderError(
          `${this.provider}: batch ${providerBatchId.slice(0, 64)} not found`,
          ProviderErrorCode.JobNotFound,
          true,
        ),
      };
    }
    switch (batch.status) {
      case "completed":
      case "expired":
      case "cancelled":
        // Expired and cancelled batches keep what they finished; the rest did not run.
        return { status: "completed", results: await this.results(batch) };
      case "failed":
        return {
          status: "failed",
          error: new ProviderError(
            `${this.provider}: batch failed: ${describeErrors(batch)}`,
            ProviderErrorCode.ProviderError,
            // The batch was refused as a whole (its file, a quota): each request may still run alone.
            true,
          ),
        };
      default: {
        // validating, in_progress, finalizing, cancelling, and any status added later.
        const c = batch.request_counts;
        const ageMs = batch.created_at ? Date.now() - batch.created_at * 1000 : 0;
        return {
          status: "pending",
          finished: c ? c.completed + c.failed : undefined,
          // A batch takes minutes to hours: ask less often the longer it has run.
          pollAfterMs: Math.min(60_000, Math.max(1000, ageMs / 5)),
        };
      }
    }
  }

  async cancel(providerBatchId: string): Promise<void> {
    // A batch already finished (or gone) answers an error that changes nothing: ignored.
    await this.call("POST", `/batches/${encodeURIComponent(providerBatchId)}/cancel`, {
      notFound: "null",
      okStatuses: [400, 409],
    });
  }

  /** Gengate's batch at OpenAI, if an earlier submission of it got as far as creating it. */
  private async findSubmitted(key: string, collectedAt?: Date): Promise<OpenAIBatch | undefined> {
    const oldest = collectedAt ? collectedAt.getTime() - CLOCK_SKEW_MS : undefined;
    let after: string | undefined;
    for (let page = 0; page < (this.opts.searchPages ?? 10); page++) {
      const query = `limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`;
      const list = await this.call<BatchList>("GET", `/batches?${query}`);
      const batches = list?.data ?? [];
      const found = batches.find((b) => b.metadata?.[BATCH_KEY] === key);
      if (found) return found;
      const last = batches.at(-1);
      if (!list?.has_more || !last) return undefined;
      // Newest first: once a page reaches back before the batch was collected, stop there.
      const times = batches.map((b) => b.created_at ?? 0);
      const newestFirst = times.every((t, i) => i === 0 || t <= times[i - 1]!);
      if (oldest !== undefined && newestFirst && (last.created_at ?? 0) * 1000 < oldest) {
        return undefined;
      }
      after = last.id;
    }
    return undefined;
  }

  /** Every answered request of a finished batch, from its output and error files. */
  private async results(batch: OpenAIBatch): Promise<Map<string, FinishedJobState>> {
    const results = new Map<string, FinishedJobState>();
    const model = batch.metadata?.[MODEL_KEY];
    for (const fileId of [batch.output_file_id, batch.error_file_id]) {
      if (!fileId) continue;
      await this.eachLine(fileId, (text) => {
        let line: OutputLine;
        try {
          line = JSON.parse(text) as OutputLine;
        } catch {
          return; // A line that cannot be read names no request: those count as not run.
        }
        if (line.custom_id) results.set(line.custom_id, this.lineResult(line, model));
      });
    }
    return results;
  }

  private lineResult(line: OutputLine, model: string | undefined): FinishedJobState {
    const res = line.response;
    if (!res) {
      // The request never ran: the window passed (`batch_expired`), or the batch was cancelled.
      const code = line.error?.code ?? "not_run";
      return {
        status: "failed",
        error: new ProviderError(
          `${this.provider}: batch request not run (${code}): ${line.error?.message?.slice(0, 300) ?? ""}`,
          code === "batch_expired" ? ProviderErrorCode.Timeout : ProviderErrorCode.ProviderError,
          true,
        ),
      };
    }
    if (res.status_code < 200 || res.status_code >= 300) {
      return {
        status: "failed",
        error: openAIError(this.provider, res.status_code, res.body ?? null, new Headers()),
      };
    }
    try {
      const output = imageOutput(this.provider, res.body, {});
      const size = pngSize(output.data!);
      const price = model && size ? imagePrice(model, size.width, size.height) : undefined;
      return {
        status: "succeeded",
        outputs: [{ ...output, ...size }],
        costUsd:
          price === undefined ? undefined : Math.round(price * (1 - this.discount) * 1e6) / 1e6,
      };
    } catch (err) {
      return { status: "failed", error: err as ProviderError };
    }
  }

  /**
   * Reads a result file line by line as it arrives: the file holds every image of the batch,
   * and one string of it all could pass what a JavaScript string may hold.
   */
  private async eachLine(fileId: string, onLine: (line: string) => void): Promise<void> {
    const url = `${this.opts.baseUrl}/files/${encodeURIComponent(fileId)}/content`;
    let res: Response;
    try {
      res = await fetch(url, {
        headers: this.headers,
        signal: AbortSignal.timeout(this.opts.fileTimeoutMs ?? 300_000),
        redirect: "error",
      });
    } catch (err) {
      throw this.networkError(err);
    }
    // Gone (deleted, or past its expiry): its requests count as not run, and run again alone.
    if (res.status === 404) return;
    if (!res.ok || !res.body) {
      const text = await res.text();
      let body: OpenAIErrorBody | null = null;
      try {
        body = JSON.parse(text) as OpenAIErrorBody;
      } catch {
        // Not JSON: the status says enough.
      }
      throw this.httpError(res.status, body, res.headers);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
        let start = 0;
        for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
          const line = pending + text.slice(start, nl);
          pending = "";
          start = nl + 1;
          if (line.trim()) onLine(line);
        }
        pending += text.slice(start);
        if (done) break;
      }
    } catch (err) {
      throw this.networkError(err);
    }
    if (pending.trim()) onLine(pending);
  }

  /**
   * One JSON call, errors mapped as the synchronous adapter maps them, except a 404: for a
   * batch or file that is a missing object, not a missing model (which would take the model
   * out of rotation), so it is null where the caller expects it and a plain error elsewhere.
   */
  private async call<T>(
    method: "GET" | "POST",
    path: string,
    opts: {
      json?: unknown;
      body?: FormData;
      timeoutMs?: number;
      notFound?: "null";
      okStatuses?: number[];
    } = {},
  ): Promise<T | null> {
    const res = await providerFetch<(T & OpenAIErrorBody) | null>(
      this.provider,
      `${this.opts.baseUrl}${path}`,
      {
        method,
        headers: this.headers,
        json: opts.json,
        body: opts.body,
        timeoutMs: opts.timeoutMs ?? this.opts.timeoutMs ?? 30_000,
        okStatuses: [400, 404, 409, 422],
      },
    );
    if (res.status === 404 && opts.notFound === "null") return null;
    if (opts.okStatuses?.includes(res.status)) return null;
    if (res.status >= 400) throw this.httpError(res.status, res.body, res.headers);
    return res.body;
  }

  private httpError(status: number, body: OpenAIErrorBody | null, headers: Headers): ProviderError {
    if (status === 404) {
      return new ProviderError(
        `${this.provider}: HTTP 404: ${body?.error?.message?.slice(0, 300) ?? "not found"}`,
        ProviderErrorCode.ProviderError,
        false,
      );
    }
    return openAIError(this.provider, status, body, headers);
  }

  private networkError(err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    const timedOut = (err as Error).name === "TimeoutError";
    return new ProviderError(
      `${this.provider}: ${timedOut ? "request timed out" : `request failed (${(err as Error).message})`}`,
      timedOut ? ProviderErrorCode.Timeout : ProviderErrorCode.ProviderError,
      true,
    );
  }

  private malformed(what: string): ProviderError {
    return new ProviderError(`${this.provider}: ${what}`, ProviderErrorCode.ProviderError, true);
  }
}

function describeErrors(batch: OpenAIBatch): string {
  const errors = batch.errors?.data ?? [];
  if (errors.length === 0) return "no reason given";
  return errors
    .slice(0, 3)
    .map(
      (e) => `${e.code ?? "error"}${e.line != null ? ` (line ${e.line})` : ""}: ${e.message ?? ""}`,
    )
    .join("; ")
    .slice(0, 500);
}

/** Width and height from a PNG's header, when the bytes are a PNG. */
function pngSize(data: Buffer): { width: number; height: number } | undefined {
  const signature = "89504e470d0a1a0a";
  if (data.length < 24 || data.subarray(0, 8).toString("hex") !== signature) return undefined;
  if (data.subarray(12, 16).toString("ascii") !== "IHDR") return undefined;
  return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
}
