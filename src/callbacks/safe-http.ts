import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import { canonicalHost, forbiddenHostReason, ipLiteral } from "./forbidden-address";

/**
 * Outbound HTTP to URLs that users chose, refusing anything that leads inside (SSRF).
 *
 * A URL is checked twice. When it is given (`validateCallbackUrl`): scheme, credentials, IP
 * literals in any spelling, forbidden names, and every DNS answer. And on every delivery at
 * connect time (`safePost`), by request-filtering-agent: it checks the address the socket is
 * about to connect to, after the DNS lookup of that very connection, so a name whose answers
 * changed since it was given (DNS rebinding) is still refused. Redirects are never followed:
 * a 3xx is reported to the caller as it is, so no second URL ever needs checking.
 */

/** The target is not allowed (SSRF): never retried, since trying again cannot help. */
export class CallbackRefusedError extends Error {
  readonly code = "CALLBACK_REFUSED";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CallbackRefusedError";
  }
}

/** The receiver could not be reached or did not answer in time: worth retrying later. */
export class CallbackDeliveryError extends Error {
  readonly code = "CALLBACK_DELIVERY_FAILED";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CallbackDeliveryError";
  }
}

export type LookupFunction = NonNullable<http.RequestOptions["lookup"]>;

export interface SafePostOptions {
  /** Deadline for the whole exchange: connection, request, response. */
  timeoutMs: number;
  /**
   * Lets callbacks reach private, loopback and link-local addresses (cloud metadata stays
   * refused). Only for tests whose receivers listen on 127.0.0.1: `CALLBACKS_ALLOW_PRIVATE`.
   * @defaultValue false
   */
  allowPrivate?: boolean;
  /**
   * Name resolution for the connection instead of `dns.lookup`. The connect-time filter
   * checks whatever it answers; tests use it to play a DNS answer that changed.
   */
  lookup?: LookupFunction;
}

export interface SafePostResult {
  status: number;
  /** A redirect's target: reported, never followed. */
  location?: string;
  /** The receiver's `Retry-After`, in milliseconds. */
  retryAfterMs?: number;
}

export interface ValidateCallbackUrlOptions {
  /** See `SafePostOptions.allowPrivate`. @defaultValue false */
  allowPrivate?: boolean;
  /** Every address a name resolves to. @defaultValue `dns.lookup` with `all: true` */
  resolve?: (hostname: string) => Promise<string[]>;
  /**
   * How long to wait for DNS. A slow or failing resolver does not refuse the URL: the
   * connect-time check still guards every delivery. @defaultValue 5000
   */
  resolveTimeoutMs?: number;
}

const MAX_URL_LENGTH = 2048;
/** Refused even when private addresses are allowed: nothing may ever read these. */
const METADATA_ADDRESSES = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254"];
const NOT_FOUND_CODES = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);

/**
 * Checks a callback URL when a user gives it; resolves to its normalised form, or rejects
 * with a `CallbackRefusedError` whose message can be shown to the user.
 */
export async function validateCallbackUrl(
  value: string,
  opts: ValidateCallbackUrlOptions = {},
): Promise<string> {
  const url = parseCallbackUrl(value);
  const host = url.hostname;
  const allowPrivate = opts.allowPrivate ?? false;
  const reason = refusalReason(host, allowPrivate);
  if (reason) throw new CallbackRefusedError(`host ${host} is not allowed (${reason})`);
  if (ipLiteral(host)) return url.toString();
  let addresses: string[];
  try {
    addresses = await withTimeout(
      (opts.resolve ?? resolveAll)(host),
      opts.resolveTimeoutMs ?? 5000,
    );
  } catch (err) {
    if (NOT_FOUND_CODES.has((err as { code?: string }).code ?? ""))
      throw new CallbackRefusedError(`host ${host} does not resolve`);
    return url.toString();
  }
  for (const address of addresses) {
    const refused = refusalReason(address, allowPrivate);
    // The address itself is not told: internal DNS answers are none of the caller's business.
    if (refused) throw new CallbackRefusedError(`host ${host} resolves to a ${refused} address`);
  }
  return url.toString();
}

/**
 * POSTs `body` to `url` once, through an agent that refuses forbidden addresses at connect
 * time. Resolves with the receiver's status, whatever it is (redirects included: the caller
 * decides what a status means). Rejects with `CallbackRefusedError` when the target is not
 * allowed, `CallbackDeliveryError` when there was no answer.
 */
export async function safePost(
  url: string,
  body: string,
  headers: Record<string, string>,
  opts: SafePostOptions,
): Promise<SafePostResult> {
  const target = parseCallbackUrl(url);
  const allowPrivate = opts.allowPrivate ?? false;
  const reason = refusalReason(target.hostname, allowPrivate);
  if (reason) throw new CallbackRefusedError(`host ${target.hostname} is not allowed (${reason})`);
  const agent = await callbackAgent(target.protocol, allowPrivate);
  const client = target.protocol === "https:" ? https : http;

  return new Promise<SafePostResult>((resolve, reject) => {
    const req = client.request(target, {
      method: "POST",
      agent,
      headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    });
    // One deadline for everything, including a body that never ends after the status came.
    const timer = setTimeout(
      () => req.destroy(new CallbackDeliveryError(`no answer within ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    let answered = false;
    req.on("response", (res) => {
      answered = true;
      const status = res.statusCode ?? 0;
      const location = header(res.headers.location);
      const retryAfterMs = parseRetryAfter(header(res.headers["retry-after"]));
      resolve({
        status,
        ...(location !== undefined ? { location } : {}),
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
      // The body means nothing to us: drain it so the receiver can finish, then hang up.
      res.on("error", () => undefined);
      res.on("close", () => clearTimeout(timer));
      res.resume();
    });
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(classify(err, target.hostname));
    });
    req.on("close", () => {
      if (!answered) clearTimeout(timer);
    });
    req.end(body);
  });
}

/**
 * The connect-time filter for one scheme: a request-filtering-agent agent, without keep-alive
 * so that no socket outlives the check that opened it. Exported for the tests that prove the
 * filter on its own.
 */
export async function callbackAgent(protocol: string, allowPrivate: boolean): Promise<http.Agent> {
  const key = `${protocol}${allowPrivate ? "+private" : ""}`;
  let agent = agents.get(key);
  if (!agent) {
    const lib = await filteringLibrary();
    const options = {
      keepAlive: false,
      allowPrivateIPAddress: allowPrivate,
      allowMetaIPAddress: false,
      denyIPAddressList: allowPrivate ? METADATA_ADDRESSES : [],
    };
    agent =
      protocol === "https:"
        ? new lib.RequestFilteringHttpsAgent(options)
        : new lib.RequestFilteringHttpAgent(options);
    agents.set(key, agent);
  }
  return agent;
}

const agents = new Map<string, http.Agent>();
let library: ReturnType<typeof importFilteringLibrary> | undefined;

function filteringLibrary(): ReturnType<typeof importFilteringLibrary> {
  library ??= importFilteringLibrary();
  return library;
}

function importFilteringLibrary() {
  // An ES module: this CommonJS project can only reach it through a dynamic import.
  return import("request-filtering-agent");
}

function parseCallbackUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new CallbackRefusedError("must be an absolute http(s) URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new CallbackRefusedError("must be an absolute http(s) URL");
  if (url.username || url.password) throw new CallbackRefusedError("must not contain credentials");
  if (value.length > MAX_URL_LENGTH)
    throw new CallbackRefusedError(`must be at most ${MAX_URL_LENGTH} characters`);
  return url;
}

/** Why a URL host is refused on its face (no DNS), honouring `allowPrivate`. */
function refusalReason(hostname: string, allowPrivate: boolean): string | null {
  const reason = forbiddenHostReason(hostname);
  if (!reason || !allowPrivate) return reason;
  return reason.startsWith("cloud metadata") || reason === "not a valid host name" ? reason : null;
}

function classify(err: unknown, host: string): Error {
  if (err instanceof CallbackRefusedError || err instanceof CallbackDeliveryError) return err;
  // request-filtering-agent refuses with a plain Error: "DNS lookup <ip>(...) is not allowed.
  // Because, ...". Matching its text is the only way to tell; should it ever change, such a
  // failure is merely retried as a delivery error, and the connection is still never made.
  const message = String((err as { message?: unknown }).message ?? err);
  if (/ is not allowed\b/.test(message)) {
    return new CallbackRefusedError(
      `host ${canonicalHost(host) ?? host} leads to a forbidden address at connect time`,
      { cause: err },
    );
  }
  const code = (err as { code?: unknown }).code;
  return new CallbackDeliveryError(
    typeof code === "string" && !message.includes(code) ? `${code}: ${message}` : message,
    { cause: err },
  );
}

async function resolveAll(hostname: string): Promise<string[]> {
  const answers = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return answers.map((a) => a.address);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** `Retry-After` as delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
