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
 * (by version): a late subscriber still sees the result, and nothing arrives twice.
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
      const current = await this.repo.findSnapshot(id, generationScope(v));
      if (!current) throw new NotFoundError("No such generation");
      return stream([current], sub, { completeOnTerminal: true });
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
      const unfinished = await this.repo.list(
        { accountId: account, userId: user ?? undefined },
        { first: 100, status: undefined },
      );
      const current = unfinished.nodes.filter((g) => !isTerminal(g.status)).reverse();
      return stream(current, sub, { completeOnTerminal: false });
    } catch (err) {
      await sub.return();
      throw err;
    }
  }
}

function stream(
  initial: GenerationSnapshot[],
  sub: Subscription<GenerationEventPayload>,
  opts: { completeOnTerminal: boolean },
): AsyncIterableIterator<GenerationEventPayload> {
  return new CurrentThenLive(initial, sub, opts.completeOnTerminal);
}

/**
 * Not an async generator on purpose: a generator awaiting the next event cannot be returned
 * until that event arrives, so an unsubscribing client would hold its Redis subscription
 * until then. Here `return()` ends the stream at once.
 */
class CurrentThenLive implements AsyncIterableIterator<GenerationEventPayload> {
  private readonly seen = new Map<string, number>();
  private finished = false;

  constructor(
    private readonly initial: GenerationSnapshot[],
    private readonly sub: Subscription<GenerationEventPayload>,
    private readonly completeOnTerminal: boolean,
  ) {}

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
