import http from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { deferred, type Deferred } from "../../src/common/deferred";
import { errorCode, gql } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id } }`;
const SECRET = `query($accountId: ID) { callbackSecret(accountId: $accountId) }`;

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A real receiver: answers with the next status in `statuses` (then 200). */
async function receiver(statuses: number[] = []) {
  const received: Received[] = [];
  let waiting: Deferred<Received> | undefined;
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      const r = { headers: req.headers, body };
      received.push(r);
      res.statusCode = statuses.shift() ?? 200;
      res.end();
      waiting?.resolve(r);
      waiting = undefined;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    next(): Promise<Received> {
      waiting = deferred<Received>();
      return waiting.promise;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The delivery row once `done` holds; no event marks the worker's write, so it is read again. */
async function settled(server: TestServer, id: string, done: (row: any) => boolean): Promise<any> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const [row] = await server.app.db.dataSource.query(
      `SELECT status, attempt, http_status, next_attempt_at FROM callback_deliveries WHERE generation_id = $1`,
      [id],
    );
    if (row && done(row)) return row;
    if (Date.now() > deadline)
      throw new Error(`delivery of ${id} did not settle: ${JSON.stringify(row)}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe("user callbacks through the API", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;
  let accountId: string;

  beforeAll(async () => {
    env = await createTestEnv();
    // Receivers here are on loopback, which production refuses; this server allows it.
    server = await startTestServer(env, { overrides: { CALLBACKS_ALLOW_PRIVATE: "true" } });
    ({ key, accountId } = await partner(server, await adminKey(server)));
  });

  afterAll(async () => {
    await server.stop();
    await env.cleanup();
  });

  it("POSTs the result, signed with the account's secret, to the callback URL", async () => {
    const r = await receiver();
    try {
      const arrived = r.next();
      const res = await gql(
        server.url,
        GENERATE,
        {
          input: {
            userId: "u",
            mediaType: "IMAGE",
            prompt: "callback me",
            width: 64,
            height: 64,
            callbackUrl: r.url,
            metadata: { order: 7 },
          },
        },
        key,
      );
      const id = res.data!.generate.id;
      const delivery = await arrived;
      const secret = (await gql(server.url, SECRET, {}, key)).data!.callbackSecret as string;
      expect(secret).toMatch(/^whsec_/);
      const payload = new Webhook(secret).verify(
        delivery.body,
        delivery.headers as Record<string, string>,
      ) as any;
      expect(payload).toMatchObject({
        type: "generation.succeeded",
        data: { id, status: "SUCCEEDED", metadata: { order: 7 } },
      });
      expect(payload.data.outputs[0].url).toMatch(/\/files\/generations\//);
      const row = await settled(server, id, (r) => r.status !== "PENDING");
      expect(row).toMatchObject({ status: "DELIVERED", attempt: 1 });
    } finally {
      await r.close();
    }
  });

  it("tells about a failure too, and records a receiver's error before retrying", async () => {
    const r = await receiver([500]);
    try {
      const first = r.next();
      const res = await gql(
        server.url,
        GENERATE,
        {
          input: {
            userId: "u",
            mediaType: "IMAGE",
            prompt: "fails [sim:reject]",
            width: 64,
            height: 64,
            callbackUrl: r.url,
          },
        },
        key,
      );
      const id = res.data!.generate.id;
      const delivery = await first;
      expect(JSON.parse(delivery.body)).toMatchObject({
        type: "generation.failed",
        data: { id, status: "FAILED" },
      });
      // The receiver has answered; the worker records that answer right after.
      const row = await settled(server, id, (r) => r.http_status !== null);
      expect(row).toMatchObject({ status: "PENDING", attempt: 1, http_status: 500 });
      expect(new Date(row.next_attempt_at).getTime()).toBeGreaterThan(Date.now());
    } finally {
      await r.close();
    }
  });

  it("keeps each account's secret to itself", async () => {
    const other = await partner(server, await adminKey(server), "other");
    expect(errorCode(await gql(server.url, SECRET, { accountId }, other.key))).toBe("FORBIDDEN");
    const mine = (await gql(server.url, SECRET, {}, key)).data!.callbackSecret;
    const theirs = (await gql(server.url, SECRET, {}, other.key)).data!.callbackSecret;
    expect(mine).not.toBe(theirs);
    expect(
      (await gql(server.url, SECRET, { accountId }, await adminKey(server))).data!.callbackSecret,
    ).toBe(mine);
    expect(errorCode(await gql(server.url, SECRET, {}))).toBe("UNAUTHENTICATED");
  });
});

describe("callback URLs that may not be called", () => {
  let env: TestEnv;
  let server: TestServer;
  let key: string;

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, { worker: false });
    key = (await partner(server, await adminKey(server))).key;
  });

  afterAll(async () => {
    await server.stop();
    await env.cleanup();
  });

  it.each([
    ["loopback", "http://127.0.0.1:8080/hook"],
    ["loopback in decimal", "http://2130706433/hook"],
    ["IPv6 loopback", "http://[::1]/hook"],
    ["a private network", "http://10.0.0.5/hook"],
    ["link-local", "http://169.254.10.10/hook"],
    ["cloud metadata", "http://169.254.169.254/latest/meta-data/"],
    ["localhost by name", "http://localhost:3000/hook"],
    ["an IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/hook"],
  ])(
    "refuses a callback to %s with BAD_USER_INPUT, storing nothing",
    async (_name, callbackUrl) => {
      const before = await server.app.db.dataSource.query(
        `SELECT count(*)::int AS n FROM generations`,
      );
      const res = await gql(
        server.url,
        GENERATE,
        {
          input: {
            userId: "u",
            mediaType: "IMAGE",
            prompt: "ssrf",
            width: 64,
            height: 64,
            callbackUrl,
          },
        },
        key,
      );
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("callbackUrl");
      const after = await server.app.db.dataSource.query(
        `SELECT count(*)::int AS n FROM generations`,
      );
      expect(after[0].n).toBe(before[0].n);
    },
  );
});
