import { BadInputError, ForbiddenError, NotFoundError } from "../common/errors";
import { isUuid, validateUserId } from "../auth/auth.service";
import { generationScope, requireViewer, type Viewer } from "../auth/viewer";
import {
  Topic,
  type GenerationEventPayload,
  type PubSub,
  type Subscription,
} from "../infra/pubsub/pubsub";
import {
  eventTypeForStatus,
  isTerminal,
  userTopicKey,
  type GenerationSnapshot,
} from "./generation.events";
import type { GenerationRepository } from "./generation.repository";

/**
 * Live streams for subscribers. Each stream subscribes first, then reads the current state
 * from Postgres and emits it, then passes on only events newer than what it already sent
 * (by version): a late subscriber still sees the result, and nothing arrives twice. When the
 * pub/sub loses events (Redis restarted), the stream reads the state again once it is
 * subscribed again, so a subscriber never waits for a final state that has come and gone.
 */
export class GenerationSubscriptions {
  constructor(
    private readonly repo: GenerationRepository,
    private readonly pubsub: PubSub,
  ) {}

  async watchGeneration(
    viewer: Viewer | null,
    id: string,
  ): Promise<AsyncIterableIterator<GenerationEventPayload>> {
    const v = requireViewer(viewer);
    if (!isUuid(id)) throw new NotFoundError("No such generation");
    const sub = this.pubsub.subscribe(Topic.Generation, id);
    try {
      await sub.ready;
      const scope = generationScope(v);
      const current = await this.repo.findSnapshot(id, scope);
      if (!current) throw new NotFoundError("No such generation");
      return new CurrentThenLive([current], sub, {
        completeOnTerminal: true,
        reload: async () => {
          const again = await this.repo.findSnapshot(id, scope);
          return again ? [again] : [];
        },
      });
    } catch (err) {
      await sub.return();
      throw err;
    }
  }

  async watchUser(
    viewer: Viewer | null,
    userId: string | null | undefined,
    accountId: string | null | undefined,
  ): Promise<AsyncIterableIterator<GenerationEventPayload>> {
    const v = requireViewer(viewer);
    if (accountId != null && v.role !== "ADMIN")
      throw new ForbiddenError("Only ADMIN may name an account");
    if (accountId != null && !isUuid(accountId))
      throw new BadInputError("accountId", "must be a UUID");
    if (v.role === "ADMIN" && accountId == null) {
      throw new BadInputError("accountId", "is required for an ADMIN subscription");
    }
    if (v.role === "CLIENT" && userId != null && userId !== v.userId) {
      throw new ForbiddenError("A client token sees its own user only");
    }
    if (userId != null) validateUserId(userId);
    const account = accountId ?? v.accountId;
    const user = v.role === "CLIENT" ? v.userId! : userId;
    const sub =
      user != null
        ? this.pubsub.subscribe(Topic.UserGenerations, userTopicKey(account, user))
        : this.pubsub.subscribe(Topic.AccountGenerations, account);
    try {
      await sub.ready;
      const since = Date.now();
      const recent = () =>
        this.repo.list(
          { accountId: account, userId: user ?? undefined },
          { first: 100, status: undefined },
        );
      const current = (await recent()).nodes.filter((g) => !isTerminal(g.status)).reverse();
      return new CurrentThenLive(current, sub, {
        completeOnTerminal: false,
        // After a gap: the recent generations that are unfinished or finished since the
        // stream began (what it may have missed); those it already saw pass the version check
        // only if they changed.
        reload: async () =>
          (await recent()).nodes
            .filter((g) => !isTerminal(g.status) || Date.parse(g.completedAt ?? "") >= since)
            .reverse(),
      });
    } catch (err) {
      await sub.return();
      throw err;
    }
  }
}

interface StreamOptions {
  /** End the stream once the (single) generation is terminal. */
  completeOnTerminal: boolean;
  /** The current state of what the stream covers, read again after the pub/sub lost events. */
  reload: () => Promise<GenerationSnapshot[]>;
}

/** How long a stream keeps trying to read the state again after a gap (Postgres down too). */
const RELOAD_RETRY_MS = 1_000;
const RELOAD_ATTEMPTS = 30;

/**
 * Not an async generator on purpose: a generator awaiting the next event cannot be returned
 * until that event arrives, so an unsubscribing client would hold its Redis subscription
 * until then. Here `return()` ends the stream at once.
 */
class CurrentThenLive implements AsyncIterableIterator<GenerationEventPayload> {
  private readonly seen = new Map<string, number>();
  private finished = false;
  private reloading = false;
  private reloadAgain = false;
  private readonly completeOnTerminal: boolean;

  constructor(
    private readonly initial: GenerationSnapshot[],
    private readonly sub: Subscription<GenerationEventPayload>,
    private readonly opts: StreamOptions,
  ) {
    this.completeOnTerminal = opts.completeOnTerminal;
    // Events published while the pub/sub was away are lost: read the state again and pass it
    // on like an event (the version check drops what was already sent).
    sub.onResumed(() => void this.reload());
  }

  private async reload(): Promise<void> {
    // A gap while a read is under way may postdate it: read once more after it.
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    try {
      do {
        this.reloadAgain = false;
        await this.reloadOnce();
      } while (this.reloadAgain && !this.finished);
    } finally {
      this.reloading = false;
    }
  }

  private async reloadOnce(): Promise<void> {
    for (let attempt = 1; attempt <= RELOAD_ATTEMPTS && !this.finished; attempt++) {
      try {
        for (const g of await this.opts.reload()) {
          this.sub.push({
            type: eventTypeForStatus(g.status, g.progress),
            at: new Date().toISOString(),
            generation: g,
          });
        }
        return;
      } catch {
        // Postgres is away too: try again shortly.
        await new Promise((resolve) => setTimeout(resolve, RELOAD_RETRY_MS).unref());
      }
    }
  }

  async next(): Promise<IteratorResult<GenerationEventPayload>> {
    while (!this.finished) {
      const g = this.initial.shift();
      const event: GenerationEventPayload | undefined = g
        ? {
            type: eventTypeForStatus(g.status, g.progress),
            at: new Date().toISOString(),
            generation: g,
          }
        : (await this.sub.next()).value;
      if (!event) break;
      const { id, version, status } = event.generation;
      if ((this.seen.get(id) ?? -1) >= version) continue;
      this.seen.set(id, version);
      if (this.completeOnTerminal && isTerminal(status)) await this.return();
      return { value: event, done: false };
    }
    return this.return();
  }

  async return(): Promise<IteratorResult<GenerationEventPayload>> {
    this.finished = true;
    await this.sub.return();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
