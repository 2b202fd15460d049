import { RedisPubSub as GraphqlRedisPubSub } from "graphql-redis-subscriptions";
import type Redis from "ioredis";
import {
  PushIterator,
  type PubSub,
  type Subscription,
  type Topic,
  type TopicPayloads,
} from "./pubsub";

/**
 * Pub/sub through Redis (graphql-redis-subscriptions over ioredis), so an event published by
 * any worker reaches subscribers on every api replica. Channels carry the deployment prefix.
 *
 * When the subscriber connection drops (Redis restarted, a network blip), ioredis reconnects
 * and subscribes again, but what was published in between is lost. Once the channels are
 * subscribed again, every live subscription is told (`onResumed`), so that those that must not
 * miss a state read it again from Postgres.
 */
export class RedisPubSub implements PubSub {
  private readonly inner: GraphqlRedisPubSub;
  private readonly live = new Map<PushIterator<unknown>, string>();
  private lost = false;

  constructor(
    publisher: Redis,
    private readonly subscriber: Redis,
    private readonly prefix: string,
  ) {
    this.inner = new GraphqlRedisPubSub({ publisher, subscriber });
    subscriber.on("close", () => {
      this.lost = true;
    });
    subscriber.on("ready", () => {
      if (!this.lost) return;
      this.lost = false;
      void this.resume();
    });
  }

  async publish<T extends Topic>(topic: T, key: string, payload: TopicPayloads[T]): Promise<void> {
    await this.inner.publish(this.channel(topic, key), payload);
  }

  subscribe<T extends Topic>(topic: T, key: string): Subscription<TopicPayloads[T]> {
    const channel = this.channel(topic, key);
    let subId: number | undefined;
    let closed = false;
    const ready = this.inner
      .subscribe(channel, (payload: TopicPayloads[T]) => it.push(payload))
      .then((id) => {
        subId = id;
        if (closed) this.inner.unsubscribe(id);
      });
    const it = new PushIterator<TopicPayloads[T]>(ready, () => {
      closed = true;
      this.live.delete(it as PushIterator<unknown>);
      if (subId !== undefined) this.inner.unsubscribe(subId);
    });
    this.live.set(it as PushIterator<unknown>, channel);
    return it;
  }

  async close(): Promise<void> {
    this.live.clear();
    await this.inner.close();
  }

  /**
   * After a reconnection: SUBSCRIBE every live channel again and wait for Redis to confirm
   * (ioredis resubscribes on its own too; subscribing twice is harmless, and this way the
   * confirmation is ours to wait for), then tell each subscription. Anything published from
   * then on reaches it, so a state read after this cannot be overtaken by a lost event.
   */
  private async resume(): Promise<void> {
    const subscriptions = [...this.live];
    const channels = [...new Set(subscriptions.map(([, channel]) => channel))];
    if (channels.length === 0) return;
    try {
      await this.subscriber.subscribe(...channels);
    } catch {
      // The connection dropped again: its next "ready" resumes.
      return;
    }
    for (const [it] of subscriptions) it.resumed();
  }

  private channel(topic: Topic, key: string): string {
    return `${this.prefix}:${topic}:${key}`;
  }
}
