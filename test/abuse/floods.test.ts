import { randomBytes } from "node:crypto";
import jwt from "jsonwebtoken";
import Redis from "ioredis";
import fc from "fast-check";
import {
  expectCleanAnswer,
  forceGc,
  initSocket,
  operate,
  postRaw,
  rawSocket,
  type RawSocket,
} from "../helpers/abuse";
import { gql } from "../helpers/graphql";
import { TEST_REDIS_URL } from "../helpers/redis";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  TEST_SECRET,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const PER_KEY = 4;
const PER_CONNECTION = 3;
const SUBS_PER_KEY = 5;
const VIEWER = `{ viewer { role } }`;
/** Rounds of 8 refused requests (bad JSON, unknown field, syntax, forged key) in the flood. */
const REFUSED_ROUNDS = 60;
const WATCH_USER = `subscription { generationsUpdated(userId: "flood") { type } }`;

describe("floods and forged credentials", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let a: { accountId: string; key: string };
  let revoked: string;
  const open: RawSocket[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, {
      worker: false,
      overrides: {
        WS_MAX_CONNECTIONS_PER_KEY: String(PER_KEY),
        WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: String(PER_CONNECTION),
        WS_MAX_SUBSCRIPTIONS_PER_KEY: String(SUBS_PER_KEY),
        WS_MAX_CONNECTIONS: "40",
      },
    });
    admin = await adminKey(server);
    a = await partner(server, admin, "flood-a");
    const created = await gql(
      server.url,
      `mutation { createApiKey(role: PARTNER, label: "to revoke") { id key } }`,
      {},
      a.key,
    );
    revoked = created.data!.createApiKey.key;
    await gql(
      server.url,
      `mutation($id: ID!) { revokeApiKey(id: $id) }`,
      { id: created.data!.createApiKey.id },
      a.key,
    );
  });

  afterAll(async () => {
    for (const s of open) s.ws.terminate();
    await server?.stop();
    await env?.cleanup();
  });

  async function connect(credential?: string): Promise<{ socket: RawSocket; ack: any }> {
    const r = await initSocket(server.url, credential);
    open.push(r.socket);
    return r;
  }

  async function closeAll(): Promise<void> {
    const closing = open.splice(0).map((s) => {
      s.ws.close();
      return s.closed;
    });
    await Promise.all(closing);
  }

  /** The api's own gauges: connections and operations it holds now. */
  async function held(): Promise<{ connections: number; subscriptions: number }> {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const read = (name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1]);
    return {
      connections: read("gengate_websocket_connections"),
      subscriptions: read("gengate_websocket_subscriptions"),
    };
  }

  /** Redis channels of this test's prefix that still have a subscriber. */
  async function liveChannels(): Promise<string[]> {
    const redis = new Redis(TEST_REDIS_URL);
    try {
      return (await redis.pubsub("CHANNELS", `${env.redisPrefix}*`)) as string[];
    } finally {
      redis.disconnect();
    }
  }

  /** Reads the gauges again after each turn of the event loop until `pred` holds. */
  async function until(
    pred: (h: { connections: number; subscriptions: number }) => boolean,
  ): Promise<void> {
    while (!pred(await held())) await new Promise((r) => setImmediate(r));
  }
  const drained = () => until((h) => h.connections === 0 && h.subscriptions === 0);

  describe("WebSocket caps", () => {
    afterEach(closeAll);

    beforeEach(drained);

    it(`refuses the connection past WS_MAX_CONNECTIONS_PER_KEY (${PER_KEY}) with close code 4429`, async () => {
      for (let i = 0; i < PER_KEY; i++)
        expect((await connect(a.key)).ack.type).toBe("connection_ack");
      const over = await connect(a.key);
      expect(over.ack).toEqual({ closed: 4429 });
      expect((await over.socket.closed).reason).toMatch(/Too many connections/);
      // Another credential is not affected, and a freed slot can be taken again.
      expect((await connect(admin)).ack.type).toBe("connection_ack");
      const first = open[0]!;
      first.ws.close();
      await first.closed;
      await until((h) => h.connections === PER_KEY);
      const again = await connect(a.key);
      expect(again.ack.type).toBe("connection_ack");
    });

    it(`answers the operation past WS_MAX_SUBSCRIPTIONS_PER_CONNECTION (${PER_CONNECTION}) with RATE_LIMITED`, async () => {
      const { socket } = await connect(a.key);
      for (let i = 0; i < PER_CONNECTION; i++) {
        socket.send({ id: `s${i}`, type: "subscribe", payload: { query: WATCH_USER } });
      }
      const refused = await operate(socket, "over", { query: WATCH_USER });
      expect(refused.type).toBe("error");
      expect(refused.payload[0].extensions).toMatchObject({
        code: "RATE_LIMITED",
        limit: "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        max: PER_CONNECTION,
      });
      // Completing one frees its place.
      socket.send({ id: "s0", type: "complete" });
      const ok = await operate(socket, "q", { query: VIEWER });
      expect(ok.type).toBe("next");
    });

    it(`answers the operation past WS_MAX_SUBSCRIPTIONS_PER_KEY (${SUBS_PER_KEY}) across connections with RATE_LIMITED`, async () => {
      const one = (await connect(a.key)).socket;
      const two = (await connect(a.key)).socket;
      for (let i = 0; i < PER_CONNECTION; i++) {
        one.send({ id: `s${i}`, type: "subscribe", payload: { query: WATCH_USER } });
      }
      for (let i = 0; i < SUBS_PER_KEY - PER_CONNECTION; i++) {
        two.send({ id: `s${i}`, type: "subscribe", payload: { query: WATCH_USER } });
      }
      const refused = await operate(two, "over", { query: WATCH_USER });
      expect(refused.payload[0].extensions).toMatchObject({
        code: "RATE_LIMITED",
        limit: "WS_MAX_SUBSCRIPTIONS_PER_KEY",
      });
    });

    it("gives a credential's places back when its operations end and when their socket closes", async () => {
      const one = (await connect(a.key)).socket;
      const two = (await connect(a.key)).socket;
      for (let i = 0; i < PER_CONNECTION; i++) {
        one.send({ id: `s${i}`, type: "subscribe", payload: { query: WATCH_USER } });
      }
      for (let i = 0; i < SUBS_PER_KEY - PER_CONNECTION - 1; i++) {
        two.send({ id: `s${i}`, type: "subscribe", payload: { query: WATCH_USER } });
      }
      // One place left: each query takes it and gives it back when it completes.
      for (let i = 0; i < 5; i++) {
        expect((await operate(two, `q${i}`, { query: VIEWER })).type).toBe("next");
      }
      two.send({ id: "last", type: "subscribe", payload: { query: WATCH_USER } });
      const refused = await operate(two, "over", { query: VIEWER });
      expect(refused.payload[0].extensions).toMatchObject({
        limit: "WS_MAX_SUBSCRIPTIONS_PER_KEY",
      });
      // The first socket's subscriptions end with it.
      one.ws.close();
      await one.closed;
      await until((h) => h.connections === 1);
      expect((await operate(two, "again", { query: VIEWER })).type).toBe("next");
    });

    it("refuses connections past WS_MAX_CONNECTIONS with close code 1013", async () => {
      await drained();
      const tokens = await Promise.all(
        Array.from({ length: 11 }, async (_, i) => {
          const res = await gql(
            server.url,
            `mutation($u: ID!) { createClientToken(userId: $u) { token } }`,
            { u: `user-${i}` },
            a.key,
          );
          return res.data!.createClientToken.token as string;
        }),
      );
      // 11 end users × 4 connections = 44 > 40.
      const acks: unknown[] = [];
      for (const token of tokens) {
        for (let i = 0; i < PER_KEY; i++) acks.push((await connect(token)).ack);
      }
      expect(acks.filter((x: any) => x.type === "connection_ack")).toHaveLength(40);
      expect(acks.slice(40)).toEqual(Array(4).fill({ closed: 1013 }));
    });
  });

  describe("forged and missing credentials on the WebSocket", () => {
    afterEach(closeAll);

    it.each([
      ["a random key", () => `gg_${randomBytes(32).toString("base64url")}`],
      ["a revoked key", () => revoked],
      ["garbage", () => "\u0000\u202e💥"],
      [
        "a JWT signed with another secret",
        () => forge({ sub: "u", acc: a.accountId }, "x".repeat(40)),
      ],
      ["an expired client token", () => forge({ sub: "u", acc: a.accountId, exp: 1 })],
      ["an unsigned (alg none) JWT", () => unsigned({ sub: "u", acc: a.accountId })],
    ])("closes a connection with %s with 4403", async (_n, credential) => {
      const { ack } = await connect(credential());
      expect(ack).toEqual({ closed: 4403 });
    });

    it("fails every operation on an unauthenticated connection with UNAUTHENTICATED", async () => {
      const { socket } = await connect();
      for (const query of [VIEWER, WATCH_USER, `subscription { alertRaised { id } }`]) {
        const res = await operate(socket, query, { query });
        expect(res.payload.errors?.[0] ?? res.payload[0]).toMatchObject({
          extensions: { code: "UNAUTHENTICATED" },
        });
      }
    });
  });

  describe("forged credentials over HTTP", () => {
    const cases: Array<[string, () => string]> = [
      ["a random key", () => `gg_${randomBytes(32).toString("base64url")}`],
      ["a revoked key", () => revoked],
      [
        "a JWT signed with another secret",
        () => forge({ sub: "u", acc: a.accountId }, "y".repeat(40)),
      ],
      [
        "a JWT with our secret but another issuer",
        () => forge({ sub: "u", acc: a.accountId }, TEST_SECRET, "evil"),
      ],
      ["an expired client token", () => forge({ sub: "u", acc: a.accountId, exp: 1 })],
      ["an unsigned (alg none) JWT", () => unsigned({ sub: "u", acc: a.accountId })],
      [
        "an HS256 JWT with its signature stripped",
        () => forge({ sub: "u", acc: a.accountId }).replace(/\.[^.]+$/, "."),
      ],
      ["a JWT with claims of the wrong types", () => forge({ sub: 7, acc: ["x"] })],
    ];
    it.each(cases)("answers %s with 401 and UNAUTHENTICATED", async (_n, credential) => {
      const res = await postRaw(server.url, JSON.stringify({ query: VIEWER }), {
        "content-type": "application/json",
        authorization: `Bearer ${credential()}`,
      });
      expect(res.status).toBe(401);
      expectCleanAnswer(res);
      expect(res.json.errors[0].extensions.code).toBe("UNAUTHENTICATED");
    });

    it("answers 100 random authorization headers with 401 (or 200 for none), never a 5xx", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.string({ unit: "grapheme-ascii", maxLength: 300 }),
            fc.string({ unit: "grapheme-ascii", maxLength: 300 }).map((s) => `Bearer ${s}`),
            fc.base64String({ maxLength: 200 }).map((s) => `Bearer gg_${s}`),
            fc
              .tuple(fc.base64String(), fc.base64String(), fc.base64String())
              .map((p) => `Bearer ${p.join(".")}`),
          ),
          async (authorization) => {
            const res = await postRaw(server.url, JSON.stringify({ query: VIEWER }), {
              "content-type": "application/json",
              authorization,
            });
            expectCleanAnswer(res);
            if (res.status !== 200)
              expect(res.json.errors[0].extensions.code).toBe("UNAUTHENTICATED");
          },
        ),
        { numRuns: 100, seed: 4242 },
      );
    });
  });

  describe("bounded memory", () => {
    it("returns to what it held, and near its heap, after hundreds of refused requests and connections", async () => {
      const gc = forceGc();
      const warm = async () => {
        for (let i = 0; i < 50; i++) await postRaw(server.url, "{");
      };
      await warm();
      await drained();
      // What the app subscribes to for good (alerts, provider health, the catalog).
      const channelsBefore = (await liveChannels()).sort();
      gc();
      const before = process.memoryUsage().heapUsed;

      // Refused requests, a few at a time so they overlap.
      const bodies = [
        "{",
        `{"query": "{ nope }"}`,
        `{"query": "${"{ a ".repeat(50)}"}`,
        JSON.stringify({ query: VIEWER }),
      ];
      for (let round = 0; round < REFUSED_ROUNDS; round++) {
        await Promise.all(
          [...bodies, ...bodies].map((b, i) =>
            postRaw(server.url, b, {
              "content-type": "application/json",
              authorization: `Bearer ${i % 4 === 3 ? "gg_forged" : a.key}`,
            }),
          ),
        );
      }
      // Connections that subscribe and go, some closing before they are acknowledged.
      for (let round = 0; round < 40; round++) {
        const batch = await Promise.all(
          Array.from({ length: PER_KEY }, async (_, i) => {
            const { socket, ack } = await initSocket(server.url, a.key);
            if (ack.type === "connection_ack" && i % 2 === 0) {
              socket.send({ id: "w", type: "subscribe", payload: { query: WATCH_USER } });
            }
            return socket;
          }),
        );
        await Promise.all(batch.map((s) => (s.ws.close(), s.closed)));
      }
      for (let round = 0; round < 60; round++) {
        const s = await rawSocket(server.url);
        s.send({ type: "connection_init", payload: { authorization: `Bearer ${a.key}` } });
        s.ws.terminate(); // gone while the server authenticates
        await s.closed;
      }
      await drained();
      // No subscription left behind in Redis either.
      for (;;) {
        const channels = (await liveChannels()).sort();
        if (JSON.stringify(channels) === JSON.stringify(channelsBefore)) break;
        await new Promise((r) => setImmediate(r));
      }
      gc();
      const growth = process.memoryUsage().heapUsed - before;
      // The test process holds the server and the clients both: a generous bound, far
      // below what keeping each request or socket would take.
      expect(growth).toBeLessThan(30 * 1024 * 1024);
      expect(await held()).toEqual({ connections: 0, subscriptions: 0 });
    });
  });
});

function forge(claims: Record<string, unknown>, secret = TEST_SECRET, issuer = "gengate"): string {
  return jwt.sign(claims, secret, { algorithm: "HS256", issuer, audience: "gengate-client" });
}

function unsigned(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part({ ...claims, iss: "gengate", aud: "gengate-client" })}.`;
}
