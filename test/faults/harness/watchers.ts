import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import { deferred, type Deferred } from "../../../src/common/deferred";

/**
 * Subscribers as a real client would run them: graphql-ws clients that retry (a dropped
 * socket reconnects, to another api when its own is gone, and every active subscription is
 * sent again), each watching `generationUpdated` of the generations it is given. A
 * subscription first emits the current state, so a reconnected one catches up with what it
 * missed while it was away.
 */

const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id status } }
}`;

const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELED"];

export interface WatchedEvent {
  type: string;
  status: string;
  at: number;
}

interface Watch {
  id: string;
  client: number;
  events: WatchedEvent[];
  final: Deferred<string>;
  errors: unknown[];
  retries: number;
}

export interface WatcherOptions {
  /** The api base URLs a client may connect to: called on every (re)connection. */
  targets: () => string[];
  key: string;
  /** graphql-ws clients (sockets); watches are spread over them. @defaultValue 2 */
  clients?: number;
}

export class Watchers {
  private readonly clients: Client[] = [];
  private readonly watches = new Map<string, Watch>();
  /** Per client, the api it is connected to now (undefined while it is not). */
  readonly connectedTo: Array<string | undefined> = [];
  /** Connections made per client (the first one included). */
  readonly connections: number[] = [];
  private readonly connectedWaiters: Array<{ pred: () => boolean; d: Deferred<void> }> = [];
  private readonly eventWaiters: Array<{
    pred: (id: string, e: WatchedEvent) => boolean;
    d: Deferred<string>;
  }> = [];
  private next = 0;
  /** Subscriptions sent again after a SERVICE_UNAVAILABLE refusal. */
  resubscribed = 0;

  constructor(private readonly opts: WatcherOptions) {
    const n = opts.clients ?? 2;
    for (let i = 0; i < n; i++) {
      this.connections.push(0);
      this.connectedTo.push(undefined);
      let target = "";
      this.clients.push(
        createClient({
          // Client i prefers api i (mod how many are live): spreads sockets over the apis.
          url: () => {
            const live = opts.targets();
            if (live.length === 0) throw new Error("no api to connect to");
            target = live[i % live.length]!;
            return target.replace(/^http/, "ws") + "/graphql";
          },
          webSocketImpl: WebSocket,
          lazy: true,
          connectionParams: { authorization: `Bearer ${opts.key}` },
          retryAttempts: 100,
          shouldRetry: () => true,
          retryWait: () => new Promise((resolve) => setTimeout(resolve, 200)),
          on: {
            connected: () => {
              this.connections[i]!++;
              this.connectedTo[i] = target;
              this.notify();
            },
            closed: () => {
              this.connectedTo[i] = undefined;
            },
          },
        }),
      );
    }
  }

  /** Starts watching a generation (on the next client, round-robin). */
  watch(id: string): void {
    if (this.watches.has(id)) return;
    const client = this.next++ % this.clients.length;
    const w: Watch = { id, client, events: [], final: deferred<string>(), errors: [], retries: 0 };
    this.watches.set(id, w);
    w.final.promise.catch(() => undefined);
    this.subscribe(w);
  }

  /**
   * One subscription of `w`. A refusal with SERVICE_UNAVAILABLE (the api could not reach
   * Postgres to read the current state) is retried shortly, as the code asks; any other error,
   * or an end without a final state, fails the watch.
   */
  private subscribe(w: Watch): void {
    let retry = false;
    const again = () => {
      w.retries++;
      this.resubscribed++;
      setTimeout(() => this.subscribe(w), 250);
    };
    this.clients[w.client]!.subscribe<{
      generationUpdated: { type: string; generation: { status: string } };
    }>(
      { query: WATCH, variables: { id: w.id } },
      {
        next: (msg) => {
          if (msg.errors) {
            w.errors.push(msg.errors);
            if (msg.errors.some(isUnavailable)) retry = true;
            return;
          }
          const e = msg.data!.generationUpdated;
          const event = { type: e.type, status: e.generation.status, at: Date.now() };
          w.events.push(event);
          for (let k = this.eventWaiters.length - 1; k >= 0; k--) {
            const waiter = this.eventWaiters[k]!;
            if (waiter.pred(w.id, event)) {
              this.eventWaiters.splice(k, 1);
              waiter.d.resolve(w.id);
            }
          }
          if (TERMINAL.includes(e.generation.status)) w.final.resolve(e.generation.status);
        },
        error: (err) => {
          w.errors.push(err);
          if (Array.isArray(err) && err.some(isUnavailable)) return again();
          w.final.reject(new Error(`subscription to ${w.id} failed: ${describe(err)}`));
        },
        complete: () => {
          if (retry) return again();
          if (!w.events.some((e) => TERMINAL.includes(e.status)))
            w.final.reject(
              new Error(
                `subscription to ${w.id} completed without a final state; events ` +
                  `${JSON.stringify(w.events.map((e) => e.type))}, errors ${describe(w.errors)}`,
              ),
            );
        },
      },
    );
  }

  /** Resolves once `pred` holds after a connection event (checked at once, too). */
  whenConnected(pred: () => boolean): Promise<void> {
    const d = deferred<void>();
    this.connectedWaiters.push({ pred, d });
    this.notify();
    return d.promise;
  }

  /** Resolves with the id of the first generation to report an event matching `pred`. */
  untilEvent(pred: (id: string, e: WatchedEvent) => boolean, timeoutMs = 30_000): Promise<string> {
    for (const w of this.watches.values()) {
      if (w.events.some((e) => pred(w.id, e))) return Promise.resolve(w.id);
    }
    const d = deferred<string>();
    const waiter = { pred, d };
    this.eventWaiters.push(waiter);
    const timer = setTimeout(() => {
      const i = this.eventWaiters.indexOf(waiter);
      if (i >= 0) this.eventWaiters.splice(i, 1);
      d.reject(new Error(`no matching subscription event within ${timeoutMs} ms`));
    }, timeoutMs);
    return d.promise.finally(() => clearTimeout(timer));
  }

  /** Watched generations with no final state yet, on `client` (any client by default). */
  pending(client?: number): string[] {
    return [...this.watches.values()]
      .filter((w) => client === undefined || w.client === client)
      .filter((w) => !w.events.some((e) => TERMINAL.includes(e.status)))
      .map((w) => w.id);
  }

  /** The client index of a watched generation. */
  clientOf(id: string): number | undefined {
    return this.watches.get(id)?.client;
  }

  events(id: string): WatchedEvent[] {
    return this.watches.get(id)?.events ?? [];
  }

  /** Resolves once every watched generation has reported a final state, with each one's. */
  async finals(timeoutMs: number): Promise<Map<string, string>> {
    const entries = [...this.watches.values()];
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const missing = entries
          .filter((w) => !w.events.some((e) => TERMINAL.includes(e.status)))
          .map(
            (w) => `${w.id} (client ${w.client}): ${JSON.stringify(w.events.map((e) => e.type))}`,
          );
        reject(
          new Error(
            `${missing.length} of ${entries.length} subscribers saw no final state within ` +
              `${timeoutMs} ms:\n${missing.slice(0, 20).join("\n")}`,
          ),
        );
      }, timeoutMs);
    });
    try {
      const statuses = await Promise.race([
        Promise.all(entries.map((w) => w.final.promise)),
        timeout,
      ]);
      return new Map(entries.map((w, i) => [w.id, statuses[i]!]));
    } finally {
      clearTimeout(timer);
    }
  }

  async dispose(): Promise<void> {
    await Promise.all(this.clients.map((c) => Promise.resolve(c.dispose()).catch(() => undefined)));
  }

  private notify(): void {
    for (let i = this.connectedWaiters.length - 1; i >= 0; i--) {
      const w = this.connectedWaiters[i]!;
      if (w.pred()) {
        this.connectedWaiters.splice(i, 1);
        w.d.resolve();
      }
    }
  }
}

function isUnavailable(e: { extensions?: Record<string, unknown> }): boolean {
  return e?.extensions?.code === "SERVICE_UNAVAILABLE";
}

function describe(err: unknown): string {
  if (Array.isArray(err)) return JSON.stringify(err);
  const e = err as { code?: number; reason?: string; message?: string };
  if (typeof e?.code === "number") return `socket closed with ${e.code} ${e.reason ?? ""}`;
  return e?.message ?? String(err);
}
