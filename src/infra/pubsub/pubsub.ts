import type { GenerationSnapshot } from "../../generation/generation.events";
import type { CircuitTransition } from "../../routing/circuit-breaker";
import type { AlertRow } from "../../cost/budget.repository";

/**
 * Fan-out of live events to every api process. Payloads are plain JSON (dates as ISO strings)
 * because through Redis that is all they can be. Delivery is at most once: subscribers that
 * must not miss state read it from Postgres first and use events only for what comes after.
 */
export enum Topic {
  /** key: generation id */
  Generation = "generation",
  /** key: `${accountId}:${userId}` */
  UserGenerations = "user-generations",
  /** key: account id */
  AccountGenerations = "account-generations",
  /** key: "all": every circuit transition of every provider */
  ProviderHealth = "provider-health",
  /** key: "all": an operator changed the model catalog; every process reloads it */
  Catalog = "catalog",
  /** key: "all": every alert raised */
  Alerts = "alerts",
  /** key: account id: the alerts about one account (its budgets) */
  AccountAlerts = "account-alerts",
  /** key: "all": an API key was revoked; every api process forgets it */
  ApiKeyRevoked = "api-key-revoked",
}

export type GenerationEventType =
  "QUEUED" | "STARTED" | "PROGRESS" | "ATTEMPT_FAILED" | "SUCCEEDED" | "FAILED" | "CANCELED";

export interface GenerationEventPayload {
  type: GenerationEventType;
  at: string;
  generation: GenerationSnapshot;
}

/** The catalog changed in Postgres; the payload says what, the reload reads it all. */
export interface CatalogChangedPayload {
  /** The model that was created or edited. */
  model: string;
  at: string;
}

export interface TopicPayloads {
  [Topic.Generation]: GenerationEventPayload;
  [Topic.UserGenerations]: GenerationEventPayload;
  [Topic.AccountGenerations]: GenerationEventPayload;
  [Topic.ProviderHealth]: CircuitTransition;
  [Topic.Catalog]: CatalogChangedPayload;
  [Topic.Alerts]: AlertRow;
  [Topic.AccountAlerts]: AlertRow;
  [Topic.ApiKeyRevoked]: { keyId: string };
}

export interface Subscription<T> extends AsyncIterableIterator<T> {
  /** Resolves once the subscription is live, so nothing published after it is missed. */
  ready: Promise<void>;
  /**
   * Calls `listener` each time the subscription is live again after the transport lost it
   * (Redis restarted, the connection dropped): whatever was published meanwhile is gone, so a
   * subscriber that must not miss a state reads it again from Postgres.
   */
  onResumed(listener: () => void): void;
  /** Hands this subscriber a value as if it had been published (a state read again). */
  push(value: T): void;
  return(): Promise<IteratorResult<T>>;
}

export interface PubSub {
  publish<T extends Topic>(topic: T, key: string, payload: TopicPayloads[T]): Promise<void>;
  subscribe<T extends Topic>(topic: T, key: string): Subscription<TopicPayloads[T]>;
  close(): Promise<void>;
}

/** An async iterator fed by pushes; used by both drivers. */
export class PushIterator<T> implements Subscription<T> {
  private readonly buffer: T[] = [];
  private readonly pullers: Array<(r: IteratorResult<T>) => void> = [];
  private readonly resumedListeners: Array<() => void> = [];
  private done = false;

  constructor(
    readonly ready: Promise<void>,
    private readonly onClose: () => void,
    /** Events beyond this many unread ones are dropped: a stalled client must not grow memory. */
    private readonly maxBuffer = 1000,
  ) {}

  push(value: T): void {
    if (this.done) return;
    const puller = this.pullers.shift();
    if (puller) puller({ value, done: false });
    else if (this.buffer.length < this.maxBuffer) this.buffer.push(value);
  }

  onResumed(listener: () => void): void {
    this.resumedListeners.push(listener);
  }

  /** The transport is live again after a gap (see `Subscription.onResumed`). */
  resumed(): void {
    if (this.done) return;
    for (const listener of this.resumedListeners) listener();
  }

  /** Whether `return()` has ended it. */
  get closed(): boolean {
    return this.done;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.buffer.length > 0)
      return Promise.resolve({ value: this.buffer.shift()!, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.pullers.push(resolve));
  }

  return(): Promise<IteratorResult<T>> {
    if (!this.done) {
      this.done = true;
      this.buffer.length = 0;
      for (const p of this.pullers.splice(0)) p({ value: undefined, done: true });
      this.resumedListeners.length = 0;
      this.onClose();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(err: unknown): Promise<IteratorResult<T>> {
    void this.return();
    return Promise.reject(err);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
