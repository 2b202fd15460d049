import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import { PG_ADMIN_URL } from "../helpers/postgres";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

/**
 * Postgres and Redis going away under a running api, simulated by cutting a TCP proxy that the
 * api reaches them through (the shared servers themselves are never touched).
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id status } }
}`;
type Event = { generationUpdated: { type: string; generation: { id: string; status: string } } };

function input(prompt: string) {
  return { userId: "outage", mediaType: "IMAGE", prompt, width: 64, height: 64, cache: "BYPASS" };
}

describe("Postgres unreachable under a running api", () => {
  let env: TestEnv;
  let proxy: TcpProxy;
  let server: TestServer;
  let key: string;
  let socket: WsClient;

  beforeAll(async () => {
    env = await createTestEnv();
    const pg = new URL(PG_ADMIN_URL);
    proxy = await startTcpProxy(pg.hostname, Number(pg.port || 5432));
    server = await startTestServer(env, {
      worker: false,
      overrides: { DATABASE_URL: proxy.url(env.databaseUrl) },
    });
    key = (await partner(server, await adminKey(server))).key;
    socket = wsClient(server.url, key);
  });

  afterAll(async () => {
    proxy?.restore();
    await socket?.dispose();
    await server?.stop();
    await proxy?.close();
    await env?.cleanup();
  });

  it("answers SERVICE_UNAVAILABLE (HTTP 200) to requests and subscriptions meanwhile, keeps the socket open, and serves again once it is back", async () => {
    const before = await gql(server.url, GENERATE, { input: input("before the outage") }, key);
    const id = before.data!.generate.id as string;
    const watching = socket.subscribe<Event>(WATCH, { id });
    await watching.until(() => true);

    proxy.cut();
    const refused = await gql(server.url, GENERATE, { input: input("during the outage") }, key);
    expect(refused.status).toBe(200);
    expect(errorCode(refused)).toBe("SERVICE_UNAVAILABLE");
    expect(refused.errors![0]!.extensions).toMatchObject({ retryAfterSeconds: 1 });

    const lookup = await gql(
      server.url,
      `query($id: ID!) { generation(id: $id) { id } }`,
      { id },
      key,
    );
    expect(lookup.status).toBe(200);
    expect(errorCode(lookup)).toBe("SERVICE_UNAVAILABLE");

    // A new subscription is refused as an operation error; the socket and the streams already
    // on it stay.
    const late = socket.subscribe<Event>(WATCH, { id });
    const err = await late.error();
    expect(err).toEqual([
      expect.objectContaining({
        extensions: expect.objectContaining({ code: "SERVICE_UNAVAILABLE" }),
      }),
    ]);
    expect(watching.errors).toEqual([]);

    proxy.restore();
    const after = await gql(server.url, GENERATE, { input: input("after the outage") }, key);
    expect(after.data?.generate.status).toBe("QUEUED");
    const again = socket.subscribe<Event>(WATCH, { id: after.data!.generate.id });
    expect((await again.until(() => true)).generationUpdated.generation.status).toBe("QUEUED");
    again.stop();
    watching.stop();
  });
});
