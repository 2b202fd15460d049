import Redis from "ioredis";
import { InProcessPubSub } from "../../src/infra/pubsub/in-process.pubsub";
import {
  Topic,
  type GenerationEventPayload,
  type PubSub,
  type Subscription,
} from "../../src/infra/pubsub/pubsub";
import { RedisPubSub } from "../../src/infra/pubsub/redis.pubsub";
import { createRedis } from "../../src/infra/redis";
import { TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";

function event(id: string, version: number): GenerationEventPayload {
  return {
    type: "PROGRESS",
    at: new Date(0).toISOString(),
    generation: { id, version, createdAt: new Date(0).toISOString() } as never,
  };
}

async function connected(): Promise<Redis> {
  const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
  await redis.connect();
  return redis;
}

const makers: Array<[string, () => Promise<{ a: PubSub; b: PubSub }>]> = [
  [
    "in-process",
    async () => {
      const p = new InProcessPubSub();
      return { a: p, b: p };
    },
  ],
  [
    "Redis",
    async () => {
      // Two instances with their own connections stand for two processes. Connected first, as
      // in the app: ioredis writes a SUBSCRIBE made while it is still connecting, and the
      // subscriber mode that its reply starts makes the ready check's INFO fail.
      const prefix = uniquePrefix();
      const make = async () => new RedisPubSub(await connected(), await connected(), prefix);
      return { a: await make(), b: await make() };
    },
  ],
];

describe.each(makers)("%s pub/sub", (_name, make) => {
  let a: PubSub;
  let b: PubSub;

  beforeEach(async () => {
    ({ a, b } = await make());
  });

  afterEach(async () => {
    await a.close();
    if (b !== a) await b.close();
  });

  it("delivers a published event to a subscriber of another instance, as plain JSON", async () => {
    const sub = b.subscribe(Topic.Generation, "g1");
    await sub.ready;
    await a.publish(Topic.Generation, "g1", event("g1", 3));
    const { value } = await sub.next();
    expect(value).toEqual(event("g1", 3));
    await sub.return();
  });

  it("carries catalog change notices", async () => {
    const sub = b.subscribe(Topic.Catalog, "all");
    await sub.ready;
    const notice = { model: "flux-dev", at: new Date(0).toISOString() };
    await a.publish(Topic.Catalog, "all", notice);
    const { value } = await sub.next();
    expect(value).toEqual(notice);
    await sub.return();
  });

  it("keeps topics and keys apart", async () => {
    const other = b.subscribe(Topic.Generation, "g2");
    const mine = b.subscribe(Topic.Generation, "g1");
    await Promise.all([other.ready, mine.ready]);
    await a.publish(Topic.AccountGenerations, "g1", event("wrong-topic", 1));
    await a.publish(Topic.Generation, "g2", event("g2", 1));
    await a.publish(Topic.Generation, "g1", event("g1", 1));
    expect((await mine.next()).value?.generation.id).toBe("g1");
    expect((await other.next()).value?.generation.id).toBe("g2");
    await mine.return();
    await other.return();
  });

  it("keeps every live subscription while others on the same and other keys come and go", async () => {
    const live: Array<{ key: string; sub: Subscription<GenerationEventPayload> }> = [];
    const leaving: Array<Promise<unknown>> = [];
    for (let i = 0; i < 120; i++) {
      // Twelve keys, so most subscribes meet a pending SUBSCRIBE or a live channel of their key.
      const key = `churn-${i % 12}`;
      const sub = b.subscribe(Topic.Generation, key);
      if (i % 3 === 0) void sub.return();
      else if (i % 3 === 1) leaving.push(sub.ready.then(() => sub.return()));
      else live.push({ key, sub });
      // Every fifth one after a turn of the event loop, so some meet a finished SUBSCRIBE.
      if (i % 5 === 4) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(leaving);
    await Promise.all(live.map((l) => l.sub.ready));
    const keys = [...new Set(live.map((l) => l.key))];
    for (const key of keys) await a.publish(Topic.Generation, key, event(key, 1));
    const received = await Promise.all(live.map((l) => l.sub.next()));
    expect(received.map((r) => r.value?.generation.id)).toEqual(live.map((l) => l.key));
    await Promise.all(live.map((l) => l.sub.return()));
  });

  it("ends a subscription's iteration when it is returned", async () => {
    const sub = b.subscribe(Topic.Generation, "g3");
    await sub.ready;
    const pending = sub.next();
    await sub.return();
    expect(await pending).toEqual({ value: undefined, done: true });
    await a.publish(Topic.Generation, "g3", event("g3", 1));
    expect(await sub.next()).toEqual({ value: undefined, done: true });
  });
});

describe("the app's Redis connections", () => {
  it("a subscriber connection may subscribe while it is still connecting", async () => {
    const prefix = uniquePrefix();
    const publisher = createRedis(TEST_REDIS_URL, "test-pub");
    const subscriber = createRedis(TEST_REDIS_URL, "test-sub");
    const pubsub = new RedisPubSub(publisher, subscriber, prefix);
    try {
      // At once, before either connection is up: the app subscribes at start like this.
      const sub = pubsub.subscribe(Topic.Generation, "early");
      await sub.ready;
      await pubsub.publish(Topic.Generation, "early", event("early", 1));
      expect((await sub.next()).value?.generation.id).toBe("early");
      await sub.return();
    } finally {
      await pubsub.close();
      publisher.disconnect();
      subscriber.disconnect();
    }
  });
});
