import Redis from "ioredis";
import { InProcessPubSub } from "../../src/infra/pubsub/in-process.pubsub";
import { Topic, type GenerationEventPayload, type PubSub } from "../../src/infra/pubsub/pubsub";
import { RedisPubSub } from "../../src/infra/pubsub/redis.pubsub";
import { TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";

function event(id: string, version: number): GenerationEventPayload {
  return {
    type: "PROGRESS",
    at: new Date(0).toISOString(),
    generation: { id, version, createdAt: new Date(0).toISOString() } as never,
  };
}

const makers: Array<[string, () => { a: PubSub; b: PubSub }]> = [
  [
    "in-process",
    () => {
      const p = new InProcessPubSub();
      return { a: p, b: p };
    },
  ],
  [
    "Redis",
    () => {
      // Two instances with their own connections stand for two processes.
      const prefix = uniquePrefix();
      const make = () =>
        new RedisPubSub(new Redis(TEST_REDIS_URL), new Redis(TEST_REDIS_URL), prefix);
      return { a: make(), b: make() };
    },
  ],
];

describe.each(makers)("%s pub/sub", (_name, make) => {
  let a: PubSub;
  let b: PubSub;

  beforeEach(() => {
    ({ a, b } = make());
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
