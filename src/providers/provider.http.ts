import { AsyncLocalStorage } from "node:async_hooks";
import { SpanKind } from "@opentelemetry/api";
import { withSpan } from "../observability/tracing";
import { ProviderError, ProviderErrorCode } from "./provider.adapter";

export interface ProviderFetchOptions {
  method?: "GET" | "POST" | "PUT" | "DELETE";
  headers?: Record<string, string>;
  /** Sent as JSON. */
  json?: unknown;
  body?: string | Buffer | FormData;
  /** @defaultValue 30 s */
  timeoutMs?: number;
  /** Statuses that are an answer, not an error (e.g. fal's 202 while queued). */
  okStatuses?: number[];
}

/**
 * The deadline (epoch ms) of the provider call under way, set by the worker around each
 * adapter call (`withProviderDeadline`): every HTTP request the adapter makes for it gives up
 * by then, whatever its own timeout. A provider that accepts the connection and never answers
 * then costs an attempt its provider timeout, not a worker slot for the adapter's 30 s or more.
 */
const deadline = new AsyncLocalStorage<number>();

/** Runs `fn` (an adapter call) with every provider request in it bounded to `ms` from now. */
export function withProviderDeadline<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const at = Date.now() + Math.max(1, ms);
  const outer = deadline.getStore();
  return deadline.run(outer !== undefined ? Math.min(outer, at) : at, fn);
}

/** Longest Retry-After honoured; beyond it the worker's own backoff applies. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * One provider HTTP call: JSON in and out, a deadline, and the status codes every provider
 * shares mapped to `ProviderError` (401/403 auth, 404 not found, 400/422 bad input, 429 rate
 * limited with Retry-After, 5xx and network errors retryable). Adapters refine the message.
 */
export function providerFetch<T>(
  provider: string,
  url: string,
  opts: ProviderFetchOptions = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const method =
    opts.method ?? (opts.json !== undefined || opts.body !== undefined ? "POST" : "GET");
  // The host only: paths and queries may name jobs or carry credentials.
  return withSpan(
    `HTTP ${method}`,
    {
      "http.request.method": method,
      "server.address": hostOf(url),
      "gengate.provider": provider,
    },
    async (span) => {
      const res = await fetchOnce<T>(provider, url, method, opts);
      span.setAttribute("http.response.status_code", res.status);
      return res;
    },
    { kind: SpanKind.CLIENT },
  );
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return "invalid";
  }
}

async function fetchOnce<T>(
  provider: string,
  url: string,
  method: string,
  opts: ProviderFetchOptions,
): Promise<{ status: number; body: T; headers: Headers }> {
  let res: Response;
  const own = opts.timeoutMs ?? 30_000;
  const until = deadline.getStore();
  const timeoutMs = until !== undefined ? Math.max(1, Math.min(own, until - Date.now())) : own;
  try {
    res = await fetch(url, {
      method,
      headers: {
        accept: "application/json",
        ...(opts.json !== undefined ? { "content-type": "application/json" } : {}),
        ...opts.headers,
      },
      body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body,
      signal: AbortSignal.timeout(timeoutMs),
      redirect: "error",
    });
  } catch (err) {
    const timedOut = (err as Error).name === "TimeoutError";
    throw new ProviderError(
      `${provider}: ${timedOut ? "request timed out" : `request failed (${(err as Error).message})`}`,
      timedOut ? ProviderErrorCode.Timeout : ProviderErrorCode.ProviderError,
      true,
    );
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: keep the text for the error message.
  }
  if (res.ok || opts.okStatuses?.includes(res.status))
    return { status: res.status, body: body as T, headers: res.headers };
  throw errorForStatus(provider, res.status, body, res.headers);
}

export function errorForStatus(
  provider: string,
  status: number,
  body: unknown,
  headers: Headers,
): ProviderError {
  const detail = describe(body);
  const message = `${provider}: HTTP ${status}${detail ? `: ${detail}` : ""}`;
  if (status === 401 || status === 403)
    return new ProviderError(message, ProviderErrorCode.Auth, false);
  if (status === 404) return new ProviderError(message, ProviderErrorCode.ModelNotFound, false);
  if (status === 400 || status === 422)
    return new ProviderError(message, ProviderErrorCode.InvalidInput, false);
  if (status === 429)
    return new ProviderError(message, ProviderErrorCode.RateLimited, true, retryAfterMs(headers));
  if (status === 408 || status >= 500)
    return new ProviderError(message, ProviderErrorCode.ProviderError, true, retryAfterMs(headers));
  return new ProviderError(message, ProviderErrorCode.ProviderError, false);
}

/** `Retry-After` in seconds or as an HTTP date (and OpenAI's `retry-after-ms`), capped. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms && Number.isFinite(Number(ms)))
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, Number(ms)));
  const value = headers.get("retry-after");
  if (!value) return undefined;
  const seconds = Number(value);
  const delay = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - now;
  return Number.isFinite(delay) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, delay)) : undefined;
}

function describe(body: unknown): string {
  if (typeof body === "string") return body.slice(0, 300);
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const field = b.detail ?? b.message ?? b.error ?? b.title;
    if (typeof field === "string") return field.slice(0, 300);
    if (
      field &&
      typeof field === "object" &&
      typeof (field as { message?: unknown }).message === "string"
    ) {
      return (field as { message: string }).message.slice(0, 300);
    }
    return JSON.stringify(body).slice(0, 300);
  }
  return "";
}
