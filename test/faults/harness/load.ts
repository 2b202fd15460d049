import { deferred } from "../../../src/common/deferred";

/**
 * Keeps submitting `generate` over HTTP while a fault happens, and records what each request
 * came to: accepted (an id), refused with a GraphQL error code (fine during an outage, as
 * long as the code says what happened), or a failure of the service's contract: a 5xx, an
 * answer that is not GraphQL, an INTERNAL_SERVER_ERROR, or no answer at all in time.
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;

export interface Accepted {
  id: string;
  api: string;
  at: number;
}

export interface Outcome {
  api: string;
  at: number;
  kind: "accepted" | "refused" | "unreachable" | "dropped" | "failure";
  detail: string;
}

export interface LoadOptions {
  /** The api base URLs to spread requests over; called before each request (the live ones). */
  targets: () => string[];
  key: string;
  /** Requests in flight at once; each sends its next one when the last has answered. @defaultValue 2 */
  concurrency?: number;
  /** Pause between one client's requests. @defaultValue 250 */
  pauseMs?: number;
  /** The prompt of the n-th request (a latency hint keeps jobs in flight during the fault). */
  prompt?: (n: number) => string;
  /** A request with no answer within this long is a hang. @defaultValue 20 s */
  timeoutMs?: number;
  userId?: (n: number) => string;
  /** Called with each accepted generation's id, as soon as it is accepted. */
  onAccepted?: (id: string) => void;
}

/** Codes a refused `generate` may carry while something is down: each says what to do. */
export const OUTAGE_CODES = ["SERVICE_UNAVAILABLE", "RATE_LIMITED"];

export class LoadDriver {
  readonly accepted: Accepted[] = [];
  readonly outcomes: Outcome[] = [];
  private running = false;
  private loops: Array<Promise<void>> = [];
  private n = 0;
  private wake = new Set<() => void>();
  private readonly outcomeWaiters: Array<{
    pred: (o: Outcome) => boolean;
    d: ReturnType<typeof deferred<Outcome>>;
  }> = [];
  private readonly acceptedWaiters: Array<{ count: number; d: ReturnType<typeof deferred<void>> }> =
    [];

  constructor(private readonly opts: LoadOptions) {}

  start(): this {
    this.running = true;
    const concurrency = this.opts.concurrency ?? 2;
    for (let i = 0; i < concurrency; i++) this.loops.push(this.loop(i));
    return this;
  }

  /** Stops sending and waits for the requests in flight to answer. */
  async stop(): Promise<void> {
    this.running = false;
    for (const w of this.wake) w();
    await Promise.all(this.loops);
  }

  /** Resolves once at least `count` more generations have been accepted. */
  acceptedMore(count: number): Promise<void> {
    const d = deferred<void>();
    this.acceptedWaiters.push({ count: this.accepted.length + count, d });
    this.notify();
    return d.promise;
  }

  /** Resolves with the next outcome (from now on) that matches `pred`. */
  nextOutcome(pred: (o: Outcome) => boolean, timeoutMs = 30_000): Promise<Outcome> {
    const d = deferred<Outcome>();
    const waiter = { pred, d };
    this.outcomeWaiters.push(waiter);
    const timer = setTimeout(() => {
      const i = this.outcomeWaiters.indexOf(waiter);
      if (i >= 0) this.outcomeWaiters.splice(i, 1);
      d.reject(new Error(`no matching request outcome within ${timeoutMs} ms`));
    }, timeoutMs);
    return d.promise.finally(() => clearTimeout(timer));
  }

  failures(): Outcome[] {
    return this.outcomes.filter((o) => o.kind === "failure");
  }

  /** Counts by kind and refusal code, for the test's report. */
  summary(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const o of this.outcomes) {
      const k = o.kind === "refused" || o.kind === "failure" ? `${o.kind}:${o.detail}` : o.kind;
      out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  }

  private notify(): void {
    for (let i = this.acceptedWaiters.length - 1; i >= 0; i--) {
      const w = this.acceptedWaiters[i]!;
      if (this.accepted.length >= w.count) {
        this.acceptedWaiters.splice(i, 1);
        w.d.resolve();
      }
    }
  }

  private async loop(client: number): Promise<void> {
    while (this.running) {
      const targets = this.opts.targets();
      const n = this.n++;
      if (targets.length > 0) await this.once(targets[(n + client) % targets.length]!, n);
      if (!this.running) break;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wake.delete(done);
          resolve();
        };
        const timer = setTimeout(done, this.opts.pauseMs ?? 250);
        this.wake.add(done);
      });
    }
  }

  private async once(api: string, n: number): Promise<void> {
    const at = Date.now();
    const record = (kind: Outcome["kind"], detail: string) => {
      const o = { api, at, kind, detail };
      this.outcomes.push(o);
      for (let i = this.outcomeWaiters.length - 1; i >= 0; i--) {
        const w = this.outcomeWaiters[i]!;
        if (w.pred(o)) {
          this.outcomeWaiters.splice(i, 1);
          w.d.resolve(o);
        }
      }
    };
    const prompt = this.opts.prompt?.(n) ?? `fault load #${n} [sim:latency=600]`;
    let res: Response;
    try {
      res = await fetch(`${api}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.opts.key}` },
        body: JSON.stringify({
          query: GENERATE,
          variables: {
            input: {
              userId: this.opts.userId?.(n) ?? `load-user-${n % 3}`,
              mediaType: "IMAGE",
              model: "sim-image-standard",
              prompt,
              width: 64,
              height: 64,
              cache: "BYPASS",
            },
          },
        }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 20_000),
      });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      if (e.name === "TimeoutError") return record("failure", "no answer in time");
      // The api process is gone (killed by the scenario): a load balancer would take it out.
      if (e.cause?.code === "ECONNREFUSED") return record("unreachable", e.cause.code);
      return record("dropped", e.cause?.code ?? e.message);
    }
    let body: { data?: { generate?: { id: string } } | null; errors?: Array<any> };
    try {
      body = (await res.json()) as typeof body;
    } catch {
      return record("failure", `HTTP ${res.status} without a GraphQL body`);
    }
    if (res.status >= 500) return record("failure", `HTTP ${res.status}`);
    const id = body.data?.generate?.id;
    if (id) {
      this.accepted.push({ id, api, at });
      record("accepted", id);
      this.opts.onAccepted?.(id);
      this.notify();
      return;
    }
    const code = String(body.errors?.[0]?.extensions?.code ?? "none");
    if (OUTAGE_CODES.includes(code)) return record("refused", code);
    return record("failure", `${code}: ${body.errors?.[0]?.message ?? "no message"}`);
  }
}
