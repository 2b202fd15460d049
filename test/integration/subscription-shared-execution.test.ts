import Redis from "ioredis";
import type { Viewer } from "../../src/auth/viewer";
import { GenerationEvents, type GenerationSnapshot } from "../../src/generation/generation.events";
import { RedisPubSub } from "../../src/infra/pubsub/redis.pubsub";
import { gql, wsClient, type SubscriptionRecorder, type WsClient } from "../helpers/graphql";
import { parsePrometheusText, valueOf } from "../helpers/prometheus";
import { TEST_REDIS_URL } from "../helpers/redis";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
/** `queuePosition` resolves asynchronously: the shared result is a promise. */
const STATUS = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id status progress queuePosition } }
}`;
const PROMPT = `subscription($id: ID!) {
  generationUpdated(id: $id) { type at generation { id prompt progress } }
}`;
const MAYBE_PROMPT = `subscription($id: ID!, $withPrompt: Boolean!) {
  generationUpdated(id: $id) { type generation { id prompt @include(if: $withPrompt) } }
}`;

type Event = {
  generationUpdated: { type: string; at?: string; generation: Record<string, unknown> };
};

/**
 * Subscribers of one generation with the same selection and credential share one execution of
 * each event; each still gets exactly the result (or the formatted errors) it would get alone.
 */
describe("subscription events executed once per shared selection", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let key: string;
  let adminViewer: Viewer;
  let publisher: Redis;
  let subscriber: Redis;
  let pubsub: RedisPubSub;
  let events: GenerationEvents;
  const sockets: WsClient[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    // No worker: generations stay QUEUED and only the tests publish their events.
    server = await startTestServer(env, { worker: false });
    admin = await adminKey(server);
    key = (await partner(server, admin)).key;
    adminViewer = (await server.app.services.auth.authenticate(`Bearer ${admin}`))!;
    publisher = new Redis(TEST_REDIS_URL);
    subscriber = new Redis(TEST_REDIS_URL);
    pubsub = new RedisPubSub(publisher, subscriber, env.redisPrefix);
    events = new GenerationEvents(pubsub);
  });

  afterEach(async () => {
    await Promise.all(sockets.splice(0).map((s) => s.dispose()));
  });

  afterAll(async () => {
    await pubsub?.close();
    await server?.stop();
    await env?.cleanup();
  });

  async function queuedGeneration(prompt: string): Promise<GenerationSnapshot> {
    const res = await gql<{ generate: { id: string } }>(
      server.url,
      GENERATE,
      { input: { userId: "sharing", mediaType: "IMAGE", prompt, width: 64, height: 64 } },
      key,
    );
    return (await server.app.services.generations.get(adminViewer, res.data!.generate.id))!;
  }

  function socket(credential: string): WsClient {
    const s = wsClient(server.url, credential);
    sockets.push(s);
    return s;
  }

  /** Subscribes and waits for the stream's first message (the current state). */
  async function watching(
    s: WsClient,
    query: string,
    variables: Record<string, unknown>,
  ): Promise<SubscriptionRecorder<Event>> {
    const sub = s.subscribe<Event>(query, variables);
    await sub.until(() => true);
    return sub;
  }

  async function results(): Promise<{ executed: number; shared: number }> {
    const m = parsePrometheusText(await server.app.metrics.prometheusText());
    return {
      executed: valueOf(m, "gengate_subscription_results_total", { shared: "false" }) ?? 0,
      shared: valueOf(m, "gengate_subscription_results_total", { shared: "true" }) ?? 0,
    };
  }

  function progressed(g: GenerationSnapshot, progress: number): GenerationSnapshot {
    return { ...g, status: "PROCESSING", progress, version: g.version + 1 };
  }

  it("executes an event once for 40 subscribers with the same selection and credential, and each receives it", async () => {
    expect.assertions(122);
    const g = await queuedGeneration("one selection");
    const subs: Array<SubscriptionRecorder<Event>> = [];
    for (let i = 0; i < 10; i++) {
      const s = socket(key);
      subs.push(...(await Promise.all([1, 2, 3, 4].map(() => watching(s, STATUS, { id: g.id })))));
    }
    const before = await results();

    await events.publish("PROGRESS", progressed(g, 0.5));
    const received = await Promise.all(
      subs.map((sub) => sub.until((m) => m.generationUpdated.type === "PROGRESS")),
    );

    const after = await results();
    for (const [i, sub] of subs.entries()) {
      expect(sub.errors).toEqual([]);
      expect(sub.messages).toHaveLength(2);
      expect(received[i]).toEqual({
        generationUpdated: {
          type: "PROGRESS",
          generation: { id: g.id, status: "PROCESSING", progress: 0.5, queuePosition: null },
        },
      });
    }
    expect(after.executed - before.executed).toBe(1);
    expect(after.shared - before.shared).toBe(39);
  });

  it("gives subscribers with other fields, other variables or another credential results of their own", async () => {
    expect.assertions(19);
    const g = await queuedGeneration("several selections");
    const partnerSocket = socket(key);
    const adminSocket = socket(admin);
    const [status1, status2, prompt1, prompt2, withPrompt, withoutPrompt, admin1, admin2] =
      await Promise.all([
        watching(partnerSocket, STATUS, { id: g.id }),
        watching(partnerSocket, STATUS, { id: g.id }),
        watching(partnerSocket, PROMPT, { id: g.id }),
        watching(partnerSocket, PROMPT, { id: g.id }),
        watching(partnerSocket, MAYBE_PROMPT, { id: g.id, withPrompt: true }),
        watching(partnerSocket, MAYBE_PROMPT, { id: g.id, withPrompt: false }),
        watching(adminSocket, STATUS, { id: g.id }),
        watching(adminSocket, STATUS, { id: g.id }),
      ]);
    const all = [status1, status2, prompt1, prompt2, withPrompt, withoutPrompt, admin1, admin2];
    const before = await results();

    const next = progressed(g, 0.25);
    await events.publish("PROGRESS", next);
    await Promise.all(all.map((sub) => sub.until((m) => m.generationUpdated.type === "PROGRESS")));

    const after = await results();
    const last = (sub: SubscriptionRecorder<Event>) => sub.messages.at(-1)!.generationUpdated;
    const status = {
      type: "PROGRESS",
      generation: { id: g.id, status: "PROCESSING", progress: 0.25, queuePosition: null },
    };
    for (const sub of [status1, status2, admin1, admin2]) expect(last(sub)).toEqual(status);
    for (const sub of [prompt1, prompt2]) {
      expect(last(sub)).toEqual({
        type: "PROGRESS",
        at: expect.any(String),
        generation: { id: g.id, prompt: "several selections", progress: 0.25 },
      });
    }
    expect(last(prompt1).at).toBe(last(prompt2).at);
    expect(last(withPrompt)).toEqual({
      type: "PROGRESS",
      generation: { id: g.id, prompt: "several selections" },
    });
    expect(last(withoutPrompt)).toEqual({ type: "PROGRESS", generation: { id: g.id } });
    for (const sub of all) expect(sub.errors).toEqual([]);
    // STATUS as the partner, STATUS as the admin, PROMPT, MAYBE_PROMPT twice (its variables).
    expect(after.executed - before.executed).toBe(5);
    expect(after.shared - before.shared).toBe(3);
  });

  it("sends every subscriber the errors of a shared execution, each formatted and counted", async () => {
    expect.assertions(15);
    const g = await queuedGeneration("bad event");
    const subs: Array<SubscriptionRecorder<Event>> = [];
    for (let i = 0; i < 3; i++) {
      const s = socket(key);
      subs.push(...(await Promise.all([1, 2].map(() => watching(s, STATUS, { id: g.id })))));
    }
    const before = await results();
    const errorsBefore = await graphqlErrors("BAD_USER_INPUT");

    // A status outside the enum: the non-null `status` fails, and with it the whole event.
    const bad = { ...progressed(g, 0.5), status: "BOGUS" } as unknown as GenerationSnapshot;
    await events.publish("PROGRESS", bad);
    const errors = await Promise.all(
      subs.map((sub) =>
        sub
          .until(() => false)
          .then(
            () => undefined,
            (e: unknown) => e,
          ),
      ),
    );

    const after = await results();
    for (const e of errors) {
      expect(e).toEqual([
        {
          message: 'Enum "GenerationStatus" cannot represent value: "BOGUS"',
          extensions: { code: "BAD_USER_INPUT" },
        },
      ]);
    }
    for (const sub of subs) expect(sub.messages).toHaveLength(1);
    // Each subscriber's errors go through the server's formatting, as when each executed alone.
    expect((await graphqlErrors("BAD_USER_INPUT")) - errorsBefore).toBe(6);
    expect(after.executed - before.executed).toBe(1);
    expect(after.shared - before.shared).toBe(5);
  });

  async function graphqlErrors(code: string): Promise<number> {
    const m = parsePrometheusText(await server.app.metrics.prometheusText());
    return valueOf(m, "gengate_errors_total", { source: "graphql", code }) ?? 0;
  }
});
