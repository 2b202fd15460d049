/** A bench's view of gengate: GraphQL over HTTP, graphql-ws clients, a partner to act as. */
import http from "node:http";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import { MAIN, runGengate } from "./processes";

/** Keep-alive connections, as a partner's backend would hold them. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

export class GraphQLError extends Error {
  constructor(readonly errors: Array<{ message: string; extensions?: { code?: string } }>) {
    super(errors.map((e) => `${e.extensions?.code ?? "ERROR"}: ${e.message}`).join("; "));
  }
  get code(): string | undefined {
    return this.errors[0]?.extensions?.code;
  }
}

/**
 * One GraphQL request over HTTP (node:http with keep-alive: cheaper per call than fetch). A
 * request on a reused socket that the server closed meanwhile (its keep-alive timeout) is sent
 * again on a fresh one, as Node's documentation advises: the server never read it.
 */
export async function gql<T = any>(
  url: string,
  key: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const body = JSON.stringify({ query, variables });
  for (let attempt = 1; ; attempt++) {
    try {
      return await postGraphQL<T>(url, key, body);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean };
      if (!(e.reusedSocket && e.code === "ECONNRESET" && attempt < 3)) throw err;
    }
  }
}

/**
 * One attempt at a GraphQL request whose body the caller serialized, on `via`'s sockets: for a
 * load generator, which counts every failure and keeps its own pool of connections.
 */
export function postGraphQL<T>(
  url: string,
  key: string,
  body: string,
  via: http.Agent = agent,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}/graphql`,
      {
        method: "POST",
        agent: via,
        headers: {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          authorization: `Bearer ${key}`,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString()) as {
              data?: T;
              errors?: GraphQLError["errors"];
            };
            if (parsed.errors) reject(new GraphQLError(parsed.errors));
            else resolve(parsed.data as T);
          } catch (err) {
            reject(err as Error);
          }
        });
        res.on("error", reject);
      },
    );
    req.on("error", (err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
      err.reusedSocket = req.reusedSocket;
      reject(err);
    });
    req.end(body);
  });
}

export function wsClient(url: string, key: string): Client {
  return createClient({
    url: url.replace(/^http/, "ws") + "/graphql",
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${key}` },
    lazy: false,
    retryAttempts: 0,
    keepAlive: 0,
  });
}

/**
 * Follows one generation on `client` until the server completes the stream. Resolves with the
 * final status, or "COMPLETE after <what was seen>" (or the error code that ended it) when the
 * stream ended without one: a bug this makes visible.
 *
 * It does not dispose the subscription on the final status: the server completes the stream
 * itself, and graphql-ws' client releases a subscription disposed from `next` a second time
 * when that complete arrives, which can close the socket under the others (all of them then
 * "complete" with nothing received).
 */
export function untilTerminal(client: Client, id: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let final: string | undefined;
    let error: string | undefined;
    const seen: string[] = [];
    client.subscribe<{ generationUpdated: { generation: { status: string } } }>(
      { query: WATCH, variables: { id } },
      {
        next: (m) => {
          if (m.errors?.length) {
            const code = (m.errors[0] as { extensions?: { code?: unknown } }).extensions?.code;
            error = typeof code === "string" ? code : m.errors[0]!.message;
          }
          const s = m.data?.generationUpdated.generation.status;
          if (!s) return;
          seen.push(s);
          if (s === "SUCCEEDED" || s === "FAILED" || s === "CANCELED") final = s;
        },
        error: (e) => reject(new Error(JSON.stringify(e))),
        complete: () =>
          resolve(final ?? `COMPLETE after ${error ?? (seen.join(",") || "nothing")}`),
      },
    );
  });
}

/**
 * An ADMIN key from `gengate create-key` (of `main`, another build's, when given), which also
 * migrates the fresh database: run it first.
 */
export function adminKey(env: Record<string, string>, main = MAIN): Promise<string> {
  return runGengate(["create-key", "--role", "admin"], env, main);
}

/** A partner account through the API: the credential the scenarios generate with. */
export async function createPartner(apiUrl: string, admin: string): Promise<string> {
  const data = await gql<{ createAccount: { apiKey: { key: string } } }>(
    apiUrl,
    admin,
    `mutation { createAccount(name: "bench") { apiKey { key } } }`,
  );
  return data.createAccount.apiKey.key;
}

export const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;

export const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { status } } }`;
