import WebSocket from "ws";
import { deferred } from "../../src/common/deferred";

/** What any answer of the API may be: a client's mistake or success, never a server error. */
export const CLIENT_STATUSES = [200, 400, 401, 403, 404, 405, 406, 413, 415];

export interface RawResponse {
  status: number;
  contentType: string;
  text: string;
  json: any;
}

/** A POST to /graphql with exactly the body and headers given. */
export async function postRaw(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<RawResponse> {
  const res = await fetch(`${url}/graphql`, { method: "POST", headers, body });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", text, json };
}

/** Signs of an internal detail reaching a client: stack frames, SQL, file paths. */
const LEAKS = [
  /\bat [\w$.<>]+ \(/, // a stack frame
  /node_modules|\/src\/|\.ts:\d+/,
  /\bSELECT\b|\bINSERT INTO\b|\bQueryFailedError\b|violates [a-z ]*constraint/,
  /\bstacktrace\b/i,
];

/** Throws unless the text carries none of LEAKS (nor any of the strings given). */
export function expectNoLeak(text: string, secrets: string[] = []): void {
  for (const re of LEAKS) {
    if (re.test(text)) throw new Error(`answer leaks ${re.source}: ${text.slice(0, 500)}`);
  }
  for (const s of secrets) {
    if (text.includes(s)) throw new Error(`answer leaks "${s}": ${text.slice(0, 500)}`);
  }
}

/**
 * Throws unless the answer is a client status with GraphQL-shaped JSON: data, or errors each
 * carrying a string `extensions.code` other than INTERNAL_SERVER_ERROR, and nothing internal.
 */
export function expectCleanAnswer(res: RawResponse, secrets: string[] = []): void {
  const what = `${res.status} ${res.contentType}: ${res.text.slice(0, 500)}`;
  if (!CLIENT_STATUSES.includes(res.status)) throw new Error(`unexpected status ${what}`);
  if (!/json/.test(res.contentType) || typeof res.json !== "object" || res.json === null) {
    throw new Error(`not a JSON answer ${what}`);
  }
  if (res.status !== 200 || res.json.errors !== undefined) expectCodedErrors(res.json.errors, what);
  expectNoLeak(res.text, secrets);
}

/** Throws unless `errors` is a non-empty list of errors each with a client's code. */
export function expectCodedErrors(errors: unknown, what = JSON.stringify(errors)): void {
  if (!Array.isArray(errors) || errors.length === 0) throw new Error(`no errors in ${what}`);
  for (const e of errors as Array<{ message?: unknown; extensions?: { code?: unknown } }>) {
    if (typeof e.message !== "string") throw new Error(`error without a message in ${what}`);
    const code = e.extensions?.code;
    if (typeof code !== "string") throw new Error(`error without a code in ${what}`);
    if (code === "INTERNAL_SERVER_ERROR") throw new Error(`internal error in ${what}`);
  }
}

export interface RawSocket {
  ws: WebSocket;
  /** Every message received, parsed. */
  messages: any[];
  /** Resolves with the first received message matching, already received or future. */
  next(pred: (m: any) => boolean): Promise<any>;
  /** Resolves with the close code and reason once the socket is closed. */
  closed: Promise<{ code: number; reason: string }>;
  send(message: unknown): void;
}

/**
 * A graphql-ws socket spoken by hand, for what the client library would refuse to send.
 * Resolves once open; `init` sends connection_init with these params and waits for the ack
 * (or the close).
 */
export async function rawSocket(url: string): Promise<RawSocket> {
  const ws = new WebSocket(url.replace(/^http/, "ws") + "/graphql", "graphql-transport-ws");
  const messages: any[] = [];
  const waiters: Array<{ pred: (m: any) => boolean; resolve: (m: any) => void }> = [];
  const closed = deferred<{ code: number; reason: string }>();
  ws.on("message", (data) => {
    let m: any;
    try {
      m = JSON.parse(String(data));
    } catch {
      m = { unparsable: String(data) };
    }
    messages.push(m);
    for (const w of waiters.splice(0)) {
      if (w.pred(m)) w.resolve(m);
      else waiters.push(w);
    }
  });
  ws.on("close", (code, reason) => {
    closed.resolve({ code, reason: String(reason) });
    for (const w of waiters.splice(0)) w.resolve({ closed: code });
  });
  ws.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return {
    ws,
    messages,
    closed: closed.promise,
    next(pred) {
      const found = messages.find(pred);
      if (found) return Promise.resolve(found);
      if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ closed: true });
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    send(message) {
      ws.send(typeof message === "string" ? message : JSON.stringify(message));
    },
  };
}

/** Opens a raw socket and completes the handshake; resolves with the socket and the ack (or close). */
export async function initSocket(
  url: string,
  credential?: string,
): Promise<{ socket: RawSocket; ack: any }> {
  const socket = await rawSocket(url);
  socket.send({
    type: "connection_init",
    payload: credential ? { authorization: `Bearer ${credential}` } : {},
  });
  const ack = await socket.next((m) => m.type === "connection_ack" || "closed" in m);
  return { socket, ack };
}

/**
 * Sends one operation over an acknowledged raw socket; resolves with its first answer
 * (next or error) or the close.
 */
export async function operate(
  socket: RawSocket,
  id: string,
  payload: Record<string, unknown>,
): Promise<any> {
  socket.send({ id, type: "subscribe", payload });
  return socket.next((m) => m.id === id || "closed" in m);
}

/** A forced collection, for heap measurements (Node exposes `gc` once the flag is set). */
export function forceGc(): () => void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require("v8").setFlagsFromString("--expose-gc");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require("vm").runInNewContext("gc") as () => void;
}
