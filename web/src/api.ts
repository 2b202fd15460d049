import { createClient, type Client } from "graphql-ws";

/** What every page needs to talk to gengate from the browser, over HTTP and graphql-ws. */

export const GRAPHQL_PATH = "/graphql";

export function httpUrl(): string {
  return `${location.origin}${GRAPHQL_PATH}`;
}

export function wsUrl(): string {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${GRAPHQL_PATH}`;
}

export function bearer(credential: string): string {
  return `Bearer ${credential.trim()}`;
}

export interface GraphQLResponse<T> {
  data?: T;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

export class GraphQLRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = "GraphQLRequestError";
  }
}

/** One query or mutation over HTTP; throws the first GraphQL error. */
export async function request<T>(
  credential: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const res = await fetch(httpUrl(), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: bearer(credential) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as GraphQLResponse<T>;
  const first = body.errors?.[0];
  if (first) throw new GraphQLRequestError(first.message, first.extensions?.code);
  if (!body.data) throw new GraphQLRequestError(`HTTP ${res.status}`, undefined);
  return body.data;
}

/** A graphql-ws client that sends the credential the way the server expects it. */
export function socket(credential: string): Client {
  return createClient({
    url: wsUrl(),
    connectionParams: { authorization: bearer(credential) },
    lazy: true,
    retryAttempts: Infinity,
  });
}

/** A value remembered in this browser (localStorage), e.g. the key entered once. */
export function remembered(name: string): { get(): string; set(value: string): void } {
  const key = `gengate:${name}`;
  return {
    get: () => localStorage.getItem(key) ?? "",
    set: (value) => {
      if (value) localStorage.setItem(key, value);
      else localStorage.removeItem(key);
    },
  };
}

/** `#token=…&x=…` as a map: the fragment never reaches the server or its logs. */
export function fragmentParams(): URLSearchParams {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node as T;
}
