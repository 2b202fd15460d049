import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import { deferred, type Deferred } from "../../src/common/deferred";

export interface GraphQLResponse<T = Record<string, unknown>> {
  data?: T | null;
  errors?: Array<{ message: string; path?: string[]; extensions?: Record<string, unknown> }>;
}

/** One GraphQL request over real HTTP. */
export async function gql<T = Record<string, any>>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  credential?: string,
): Promise<GraphQLResponse<T> & { status: number }> {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(credential ? { authorization: `Bearer ${credential}` } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as GraphQLResponse<T>;
  return { ...body, status: res.status };
}

/** A new partner account through `api` (a test server or a gengate process), with its key. */
export async function partner(
  api: { url: string },
  admin: string,
  name = "acme",
): Promise<{ accountId: string; key: string }> {
  const res = await gql<{ createAccount: { account: { id: string }; apiKey: { key: string } } }>(
    api.url,
    `mutation($name: String!) { createAccount(name: $name) { account { id } apiKey { key } } }`,
    { name },
    admin,
  );
  if (!res.data) throw new Error(JSON.stringify(res.errors));
  return { accountId: res.data.createAccount.account.id, key: res.data.createAccount.apiKey.key };
}

/** The `extensions.code` of the first error, for terse assertions. */
export function errorCode(res: GraphQLResponse<unknown>): unknown {
  return res.errors?.[0]?.extensions?.code;
}

/**
 * A real graphql-ws subscription that collects what it receives. Tests wait on
 * `until(predicate)`, which resolves as soon as a received message matches.
 */
export class SubscriptionRecorder<T = any> {
  readonly messages: T[] = [];
  readonly errors: unknown[] = [];
  readonly completed: Deferred<void> = deferred();
  private waiters: Array<{ pred: (m: T, all: T[]) => boolean; d: Deferred<T> }> = [];
  private dispose: () => void = () => undefined;

  constructor(
    readonly client: Client,
    query: string,
    variables: Record<string, unknown> = {},
  ) {
    this.dispose = client.subscribe<T>(
      { query, variables },
      {
        next: (msg) => {
          if (msg.errors) {
            this.errors.push(msg.errors);
            for (const w of this.waiters.splice(0)) w.d.reject(msg.errors);
            return;
          }
          const value = msg.data as T;
          this.messages.push(value);
          this.waiters = this.waiters.filter((w) => {
            if (!w.pred(value, this.messages)) return true;
            w.d.resolve(value);
            return false;
          });
        },
        error: (err) => {
          this.errors.push(err);
          for (const w of this.waiters.splice(0)) w.d.reject(err);
          this.completed.resolve();
        },
        complete: () => this.completed.resolve(),
      },
    );
  }

  until(pred: (m: T, all: T[]) => boolean): Promise<T> {
    const found = this.messages.find((m) => pred(m, this.messages));
    if (found) return Promise.resolve(found);
    if (this.errors.length) return Promise.reject(this.errors[0]);
    const d = deferred<T>();
    this.waiters.push({ pred, d });
    return d.promise;
  }

  /** Resolves with the first error the server sends for this subscription. */
  async error(): Promise<any> {
    if (this.errors.length) return this.errors[0];
    await this.completed.promise;
    return this.errors[0];
  }

  stop(): void {
    this.dispose();
  }
}

export interface WsClient {
  client: Client;
  subscribe<T = any>(query: string, variables?: Record<string, unknown>): SubscriptionRecorder<T>;
  /** Resolves with the close code if the server closes the socket. */
  closed: Promise<number>;
  dispose(): Promise<void>;
}

export function wsClient(url: string, credential?: string): WsClient {
  const closed = deferred<number>();
  const client = createClient({
    url: url.replace(/^http/, "ws") + "/graphql",
    webSocketImpl: WebSocket,
    lazy: true,
    retryAttempts: 0,
    connectionParams: credential ? { authorization: `Bearer ${credential}` } : {},
    on: { closed: (event) => closed.resolve((event as { code: number }).code) },
  });
  return {
    client,
    subscribe: (query, variables) => new SubscriptionRecorder(client, query, variables),
    closed: closed.promise,
    dispose: async () => {
      await client.dispose();
    },
  };
}
