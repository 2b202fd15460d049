import { EventEmitter } from "node:events";
import {
  PushIterator,
  type PubSub,
  type Subscription,
  type Topic,
  type TopicPayloads,
} from "./pubsub";

/** The embedded default: events reach subscribers of this process only. */
export class InProcessPubSub implements PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish<T extends Topic>(topic: T, key: string, payload: TopicPayloads[T]): Promise<void> {
    // Round-trip through JSON so subscribers see exactly what Redis would give them.
    this.emitter.emit(`${topic}:${key}`, JSON.parse(JSON.stringify(payload)));
  }

  subscribe<T extends Topic>(topic: T, key: string): Subscription<TopicPayloads[T]> {
    const channel = `${topic}:${key}`;
    const listener = (payload: TopicPayloads[T]) => it.push(payload);
    const it = new PushIterator<TopicPayloads[T]>(Promise.resolve(), () =>
      this.emitter.off(channel, listener),
    );
    this.emitter.on(channel, listener);
    return it;
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
