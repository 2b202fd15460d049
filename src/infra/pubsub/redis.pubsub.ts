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
 */
export class RedisPubSub implements PubSub {
  private readonly inner: GraphqlRedisPubSub;

  constructor(
    publisher: Redis,
    subscriber: Redis,
    private readonly prefix: string,
  ) {
    this.inner = new GraphqlRedisPubSub({ publisher, subscriber });
  }

  async publish<T extends Topic>(topic: T, key: string, payload: TopicPayloads[T]): Promise<void> {
    await this.inner.publish(this.channel(topic, key), payload);
  }

  subscribe<T extends Topic>(topic: T, key: string): Subscription<TopicPayloads[T]> {
    let subId: number | undefined;
    let closed = false;
    const ready = this.inner
      .subscribe(this.channel(topic, key), (payload: TopicPayloads[T]) => it.push(payload))
      .then((id) => {
        subId = id;
        if (closed) this.inner.unsubscribe(id);
      });
    const it = new PushIterator<TopicPayloads[T]>(ready, () => {
      closed = true;
      if (subId !== undefined) this.inner.unsubscribe(subId);
    });
    return it;
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  private channel(topic: Topic, key: string): string {
    return `${this.prefix}:${topic}:${key}`;
  }
}
