/**
 * Fan-out: BENCH_FANOUT_SUBSCRIBERS graphql-ws subscribers (one socket each) on one generation's
 * `generationUpdated`, and one event published to them: the time from publishing to each
 * subscriber's receipt, and the api process's memory per idle connection.
 *
 * The event is published the way the worker publishes it (`GenerationEvents.publish` over
 * `RedisPubSub`, the generation's snapshot with a newer version), from this process, so the
 * clock that starts before the publish and the one that stops at each receipt are the same.
 * Receipt is measured in the clients (this process too), which therefore counts their own
 * parsing: the ceiling is measured the same way.
 *
 * Ceiling, in the same run: a plain `ws` server (bench/lib/ws-broadcast.ts) that forwards each
 * message of a Redis channel to every socket, the same number of plain `ws` clients, a message
 * of the same size.
 *
 * Memory: RSS from /proc, and the V8 heap in use after a full GC (through the inspector of a
 * process started with --inspect), before any connection and after all of them: connected and
 * idle, then each with its subscription.
 */
import type { Client } from "graphql-ws";
import Redis from "ioredis";
import WebSocket from "ws";
import { BudgetRepository } from "../src/cost/budget.repository";
import { GenerationEvents, type GenerationSnapshot } from "../src/generation/generation.events";
import { GenerationRepository } from "../src/generation/generation.repository";
import { openDatabase } from "../src/infra/data-source";
import { RedisPubSub } from "../src/infra/pubsub/redis.pubsub";
import { adminKey, createPartner, gql, GENERATE, wsClient } from "./lib/graphql";
import { withInfra } from "./lib/infra";
import { Inspector } from "./lib/memory";
import { rssBytes, startGengate, stopGengate, type GengateProcess } from "./lib/processes";
import type { Scenario } from "./lib/scenario";
import { kb, mb, ms, ratio, sleep, summarize } from "./lib/stats";

const SUBSCRIBERS = Number(process.env.BENCH_FANOUT_SUBSCRIBERS ?? 5000);
const ROUNDS = Number(process.env.BENCH_FANOUT_ROUNDS ?? 10);
const BATCH = 250;

const SUBSCRIPTION = `subscription($id: ID!) { generationUpdated(id: $id) { type at generation { id status progress } } }`;

interface Memory {
  rss: number;
  heap: number;
}

async function memoryOf(p: GengateProcess, inspector: Inspector): Promise<Memory> {
  const heap = await inspector.heapUsed(true);
  await sleep(200);
  return { rss: rssBytes(p.pid), heap };
}

/** Per-round receipt times (ms after the publish), filled by the clients as messages come. */
class Rounds {
  current = -1;
  t0 = 0;
  received: number[][] = [];
  private waiting?: () => void;

  begin(round: number): Promise<void> {
    this.current = round;
    this.received[round] = [];
    const done = new Promise<void>((resolve) => (this.waiting = resolve));
    this.t0 = performance.now();
    return done;
  }

  receipt(): void {
    if (this.current < 0) return;
    const list = this.received[this.current]!;
    list.push(performance.now() - this.t0);
    if (list.length === SUBSCRIBERS) this.waiting?.();
  }
}

async function deliver(
  rounds: Rounds,
  publish: (round: number) => Promise<void>,
): Promise<{ all: number[]; lastPerRound: number[]; lost: number }> {
  let lost = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const done = rounds.begin(r);
    await publish(r);
    const timeout = sleep(15_000).then(() => "timeout");
    if ((await Promise.race([done, timeout])) === "timeout") {
      lost += SUBSCRIBERS - rounds.received[r]!.length;
    }
    await sleep(300);
  }
  rounds.current = -1;
  const all = rounds.received.flat();
  const lastPerRound = rounds.received.map((l) => Math.max(...l));
  return { all, lastPerRound, lost };
}

export const fanOutScenario: Scenario = (ctx) =>
  withInfra(ctx, async (infra) => {
    const env = { ...infra.env, DB_POOL_SIZE: "20" };
    const admin = await adminKey(env);
    let api: GengateProcess | undefined;
    let inspector: Inspector | undefined;
    const clients: Client[] = [];
    const db = await openDatabase({ url: infra.databaseUrl, dataDir: "", poolSize: 2 });
    const publisher = new Redis(infra.redisUrl);
    const subscriber = new Redis(infra.redisUrl);
    const pubsub = new RedisPubSub(publisher, subscriber, infra.redisPrefix);
    const events = new GenerationEvents(pubsub);
    try {
      // No worker: the generation stays QUEUED, and only the bench publishes its events.
      api = await startGengate(ctx, "api", env, { inspect: true });
      inspector = await Inspector.connect(api.inspectorUrl!);
      const url = api.url!;
      const partner = await createPartner(url, admin);
      const { generate } = await gql<{ generate: { id: string } }>(url, partner, GENERATE, {
        input: { userId: "fan", mediaType: "IMAGE", model: "sim-image-fast", prompt: "fan-out" },
      });
      const repo = new GenerationRepository(
        db.dataSource,
        new BudgetRepository(db.dataSource, { FREE: 5, PRO: 100, ENTERPRISE: 10_000 }),
      );
      const snapshot = (await repo.findSnapshot(generate.id))!;

      const rounds = new Rounds();
      const connectAll = async () => {
        for (let i = 0; i < SUBSCRIBERS; i += BATCH) {
          await Promise.all(
            Array.from({ length: Math.min(BATCH, SUBSCRIBERS - i) }, () => {
              const client = wsClient(url, partner);
              clients.push(client);
              return new Promise<void>((resolve, reject) => {
                client.on("connected", () => resolve());
                client.on("closed", (e) => reject(new Error(`closed: ${JSON.stringify(e)}`)));
              });
            }),
          );
        }
      };

      // Warm-up: a few hundred connections and subscriptions, then closed.
      await subscribeBatch(await connectFew(url, partner, 300), generate.id, () => {}, true);
      await sleep(500);

      const before = await memoryOf(api, inspector);
      ctx.log(`connecting ${SUBSCRIBERS} graphql-ws clients`);
      await connectAll();
      await sleep(1000);
      const idle = await memoryOf(api, inspector);
      ctx.log(`subscribing each to generationUpdated(${generate.id})`);
      await subscribeBatch(clients, generate.id, () => rounds.receipt());
      await sleep(1000);
      const subscribed = await memoryOf(api, inspector);

      ctx.log(`${ROUNDS} events, each to ${SUBSCRIBERS} subscribers`);
      const gql_ = await deliver(rounds, (r) =>
        events.publish("PROGRESS", progressed(snapshot, r)),
      );
      const ours = summarize(gql_.all);
      ctx.log(`delivery p50 ${ms(ours.p50)}, p99 ${ms(ours.p99)}`);
      await Promise.all(clients.splice(0).map((c) => c.dispose()));
      inspector.close();
      inspector = undefined;
      await stopGengate(api);
      api = undefined;

      // The ceiling: plain ws, same count, a message of the same size.
      const message = JSON.stringify({
        id: "00000000-0000-4000-8000-000000000000",
        type: "next",
        payload: {
          data: {
            generationUpdated: {
              type: "PROGRESS",
              at: new Date().toISOString(),
              generation: { id: snapshot.id, status: "PROCESSING", progress: 0.5 },
            },
          },
        },
      });
      const channel = `${infra.redisPrefix}:ws-broadcast`;
      const raw = await startGengate(
        ctx,
        "ws-broadcast",
        {},
        { inspect: true, args: [infra.redisUrl, channel] },
      );
      const rawInspector = await Inspector.connect(raw.inspectorUrl!);
      const rawSockets: WebSocket[] = [];
      let rawResult;
      let rawBefore: Memory;
      let rawIdle: Memory;
      try {
        rawBefore = await memoryOf(raw, rawInspector);
        ctx.log(`ceiling: ${SUBSCRIBERS} plain ws clients`);
        for (let i = 0; i < SUBSCRIBERS; i += BATCH) {
          await Promise.all(
            Array.from({ length: Math.min(BATCH, SUBSCRIBERS - i) }, () => {
              const ws = new WebSocket(raw.url!.replace(/^http/, "ws"), {
                perMessageDeflate: false,
              });
              rawSockets.push(ws);
              ws.on("message", (data: Buffer) => {
                JSON.parse(data.toString());
                rounds.receipt();
              });
              return new Promise<void>((resolve, reject) => {
                ws.once("open", () => resolve());
                ws.once("error", reject);
              });
            }),
          );
        }
        await sleep(1000);
        rawIdle = await memoryOf(raw, rawInspector);
        rawResult = await deliver(rounds, async () => {
          await publisher.publish(channel, message);
        });
      } finally {
        for (const ws of rawSockets) ws.terminate();
        rawInspector.close();
        await stopGengate(raw);
      }
      const ceiling = summarize(rawResult.all);
      ctx.log(`ceiling: delivery p50 ${ms(ceiling.p50)}, p99 ${ms(ceiling.p99)}`);

      const perIdle = (idle.rss - before.rss) / SUBSCRIBERS;
      const perIdleHeap = (idle.heap - before.heap) / SUBSCRIBERS;
      const perSub = (subscribed.rss - before.rss) / SUBSCRIBERS;
      const perSubHeap = (subscribed.heap - before.heap) / SUBSCRIBERS;
      const rawPer = (rawIdle.rss - rawBefore.rss) / SUBSCRIBERS;
      const rawPerHeap = (rawIdle.heap - rawBefore.heap) / SUBSCRIBERS;
      const lastOurs = summarize(gql_.lastPerRound);
      const lastRaw = summarize(rawResult.lastPerRound);
      const met = ours.p99 < 250 && perIdle < 30 * 1024 && gql_.lost === 0;
      return {
        title: `Fan-out: ${SUBSCRIBERS.toLocaleString("en-US")} WebSocket subscribers`,
        setup: `
One \`gengate api\` process on Postgres + Redis (no worker: the generation stays QUEUED and the
bench publishes its events), started with \`--inspect\` so the bench can read its heap after a
full GC. ${SUBSCRIBERS} graphql-ws clients in the bench process, one socket each, connected with
the partner's key, each subscribed to \`generationUpdated\` of the same generation (\`type at
generation { id status progress }\`). ${ROUNDS} PROGRESS events, 300 ms apart once the previous
one has reached everyone, published by \`GenerationEvents.publish\` over \`RedisPubSub\` (the
worker's code: the generation's, the user's and the account's channels). Delivery time is from
just before the publish to each client's \`next\`, on the bench's clock.

Ceiling: a plain \`ws\` server process (bench/lib/ws-broadcast.ts) forwarding each message of a
Redis channel to every socket, ${SUBSCRIBERS} plain \`ws\` clients that parse it, a ${message.length}-byte
message (a graphql-ws \`next\` of the same shape), published the same way.`,
        rows: [
          {
            measure: "publish → delivery, every subscriber of every event",
            result: `p50 ${ms(ours.p50)}, p90 ${ms(ours.p90)}, p99 ${ms(ours.p99)} (${ours.n} deliveries, ${gql_.lost} lost)`,
            goal: "p99 < 250 ms",
          },
          {
            measure: "publish → last subscriber reached (per event)",
            result: `median ${ms(lastOurs.p50)}, worst ${ms(lastOurs.max)}`,
          },
          {
            measure: "ceiling: plain ws broadcast, publish → delivery",
            result: `p50 ${ms(ceiling.p50)}, p99 ${ms(ceiling.p99)}; last subscriber median ${ms(lastRaw.p50)} (${rawResult.lost} lost)`,
          },
          {
            measure: "gengate / ceiling, p99 delivery",
            result: ratio(ours.p99, ceiling.p99, 1),
          },
          {
            measure: "api memory per idle connection (RSS / heap after GC)",
            result: `${kb(perIdle)} / ${kb(perIdleHeap)}`,
            goal: "< 30 KB",
          },
          {
            measure: "api memory per connection with its subscription (RSS / heap after GC)",
            result: `${kb(perSub)} / ${kb(perSubHeap)}`,
          },
          {
            measure: "ceiling: plain ws server per connection (RSS / heap after GC)",
            result: `${kb(rawPer)} / ${kb(rawPerHeap)}`,
          },
          {
            measure: "api RSS: before / connected / subscribed",
            result: `${mb(before.rss)} / ${mb(idle.rss)} / ${mb(subscribed.rss)}`,
          },
        ],
        notes: [
          "RSS deltas include what the allocator keeps after the GC; the heap figure is what the connections hold.",
        ],
        headline: `p99 ${ms(ours.p99)} publish → delivery to ${SUBSCRIBERS} subscribers (plain ws ${ms(ceiling.p99)}, ${ratio(ours.p99, ceiling.p99, 1)}); ${kb(perIdle)} RSS, ${kb(perIdleHeap)} heap per idle connection`,
        goal: "p99 < 250 ms, < 30 KB per idle connection",
        met,
      };
    } finally {
      await Promise.all(clients.map((c) => c.dispose()));
      inspector?.close();
      await stopGengate(api);
      await pubsub.close().catch(() => {});
      publisher.disconnect();
      subscriber.disconnect();
      await db.close();
    }
  });

/** The event a worker would publish for the next progress step: same row, newer version. */
function progressed(g: GenerationSnapshot, round: number): GenerationSnapshot {
  return {
    ...g,
    status: "PROCESSING",
    progress: (round + 1) / (ROUNDS + 1),
    version: g.version + round + 1,
  };
}

async function connectFew(url: string, key: string, n: number): Promise<Client[]> {
  const out: Client[] = [];
  await Promise.all(
    Array.from({ length: n }, () => {
      const client = wsClient(url, key);
      out.push(client);
      return new Promise<void>((resolve) => client.on("connected", () => resolve()));
    }),
  );
  return out;
}

/**
 * Subscribes every client and resolves when each has its first message (the current state);
 * later messages go to `onEvent`. With `disposeAfter` (the warm-up), the clients are closed.
 */
async function subscribeBatch(
  clients: Client[],
  id: string,
  onEvent: () => void,
  disposeAfter = false,
): Promise<void> {
  for (let i = 0; i < clients.length; i += BATCH) {
    await Promise.all(
      clients.slice(i, i + BATCH).map(
        (client) =>
          new Promise<void>((resolve, reject) => {
            let first = true;
            client.subscribe(
              { query: SUBSCRIPTION, variables: { id } },
              {
                next: () => {
                  if (first) {
                    first = false;
                    resolve();
                  } else onEvent();
                },
                error: (e) => reject(new Error(JSON.stringify(e))),
                complete: () => {},
              },
            );
          }),
      ),
    );
  }
  if (disposeAfter) await Promise.all(clients.map((c) => c.dispose()));
}
