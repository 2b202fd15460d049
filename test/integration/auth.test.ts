import { createHash, randomUUID } from "node:crypto";
import { createClient, type Client } from "graphql-ws";
import jwt from "jsonwebtoken";
import WebSocket from "ws";
import { deferred } from "../../src/common/deferred";
import { gql, errorCode, wsClient, type WsClient } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  TEST_SECRET,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const VIEWER = `{ viewer { role userId account { id name } } }`;
const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id userId status } }`;
const GENERATIONS = `{ generations { totalCount edges { node { id } } } }`;
const CREATE_ACCOUNT = `mutation($name: String!) {
  createAccount(name: $name) { account { id name } apiKey { id key role label } }
}`;
const CREATE_API_KEY = `mutation($role: Role!, $label: String, $accountId: ID) {
  createApiKey(role: $role, label: $label, accountId: $accountId) { id key role label }
}`;
const REVOKE = `mutation($id: ID!) { revokeApiKey(id: $id) }`;
const CLIENT_TOKEN = `mutation($userId: ID!, $ttlSeconds: Int, $canGenerate: Boolean) {
  createClientToken(userId: $userId, ttlSeconds: $ttlSeconds, canGenerate: $canGenerate) { token expiresAt }
}`;
const WATCH = `subscription($id: ID!) { generationUpdated(id: $id) { type generation { id } } }`;

const IMAGE = { mediaType: "IMAGE", prompt: "a red kite", width: 128, height: 128 };

/** A client token signed the way gengate signs them, with claims and secret of our choosing. */
function forgeToken(
  claims: Record<string, unknown>,
  secret = TEST_SECRET,
  opts: { issuer?: string; audience?: string } = {},
): string {
  return jwt.sign(claims, secret, {
    algorithm: "HS256",
    issuer: opts.issuer ?? "gengate",
    audience: opts.audience ?? "gengate-client",
  });
}

describe("authentication and API keys", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let acme: { accountId: string; key: string };
  let globex: { accountId: string; key: string };
  const sockets: WsClient[] = [];
  const rawClients: Client[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env);
    admin = await adminKey(server);
    acme = await partner(server, admin, "acme");
    globex = await partner(server, admin, "globex");
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await Promise.all(rawClients.map((c) => c.dispose()));
    await server?.stop();
    await env?.cleanup();
  });

  function socket(credential?: string): WsClient {
    const s = wsClient(server.url, credential);
    sockets.push(s);
    return s;
  }

  async function clientToken(
    key: string,
    userId: string,
    extra: { ttlSeconds?: number; canGenerate?: boolean } = {},
  ): Promise<string> {
    const res = await gql(server.url, CLIENT_TOKEN, { userId, ...extra }, key);
    expect(res.errors).toBeUndefined();
    return res.data!.createClientToken.token;
  }

  describe("credentials", () => {
    it.each([
      ["viewer", VIEWER, {}],
      ["generate", GENERATE, { input: { ...IMAGE, userId: "u1" } }],
      ["generations", GENERATIONS, {}],
    ])("refuses %s without an Authorization header as UNAUTHENTICATED", async (_name, q, vars) => {
      const res = await gql(server.url, q, vars);
      expect(errorCode(res)).toBe("UNAUTHENTICATED");
      expect(res.data?.generate ?? null).toBeNull();
    });

    it("stores nothing for a generate without credentials", async () => {
      const rows = await server.app.db.dataSource.query(
        `SELECT count(*)::int AS n FROM generations WHERE prompt = $1`,
        ["anonymous kite"],
      );
      await gql(server.url, GENERATE, {
        input: { ...IMAGE, prompt: "anonymous kite", userId: "u1" },
      });
      const after = await server.app.db.dataSource.query(
        `SELECT count(*)::int AS n FROM generations WHERE prompt = $1`,
        ["anonymous kite"],
      );
      expect(after[0].n).toBe(rows[0].n);
    });

    it.each([
      ["a Basic header", "Basic dXNlcjpwYXNz"],
      ["a Bearer header with no credential", "Bearer"],
      ["a Bearer header with two words", "Bearer a b"],
      ["an unknown API key", `Bearer gg_${"x".repeat(43)}`],
      ["a token that is not a JWT", "Bearer not-a-token"],
    ])("answers %s with UNAUTHENTICATED and HTTP 401", async (_name, authorization) => {
      const res = await fetch(`${server.url}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization },
        body: JSON.stringify({ query: VIEWER }),
      });
      const body = (await res.json()) as { data?: unknown; errors?: any[] };
      expect(res.status).toBe(401);
      expect(body.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      expect(body.data ?? null).toBeNull();
    });

    it("answers an unknown API key with UNAUTHENTICATED through the gql helper too", async () => {
      const res = await gql(server.url, VIEWER, {}, `gg_${"y".repeat(43)}`);
      expect(res.status).toBe(401);
      expect(errorCode(res)).toBe("UNAUTHENTICATED");
    });
  });

  describe("viewer", () => {
    it("describes an ADMIN key as ADMIN of the operators' account", async () => {
      const res = await gql(server.url, VIEWER, {}, admin);
      expect(res.errors).toBeUndefined();
      expect(res.data!.viewer).toMatchObject({ role: "ADMIN", userId: null });
      expect(res.data!.viewer.account.name).toBe("operators");
    });

    it("describes a PARTNER key as PARTNER of its account", async () => {
      const res = await gql(server.url, VIEWER, {}, acme.key);
      expect(res.data!.viewer).toEqual({
        role: "PARTNER",
        userId: null,
        account: { id: acme.accountId, name: "acme" },
      });
    });

    it("describes a client token as CLIENT for its user in the partner's account", async () => {
      const token = await clientToken(acme.key, "user-7");
      const res = await gql(server.url, VIEWER, {}, token);
      expect(res.data!.viewer).toEqual({
        role: "CLIENT",
        userId: "user-7",
        account: { id: acme.accountId, name: "acme" },
      });
    });
  });

  describe("createAccount", () => {
    it("lets an ADMIN create a partner account whose PARTNER key works", async () => {
      const res = await gql(server.url, CREATE_ACCOUNT, { name: "initech" }, admin);
      expect(res.errors).toBeUndefined();
      const { account, apiKey } = res.data!.createAccount;
      expect(account.name).toBe("initech");
      expect(apiKey.role).toBe("PARTNER");
      expect(apiKey.key).toMatch(/^gg_/);
      const me = await gql(server.url, VIEWER, {}, apiKey.key);
      expect(me.data!.viewer).toEqual({
        role: "PARTNER",
        userId: null,
        account: { id: account.id, name: "initech" },
      });
    });

    it("refuses createAccount to a PARTNER key with FORBIDDEN", async () => {
      const res = await gql(server.url, CREATE_ACCOUNT, { name: "sneaky" }, acme.key);
      expect(errorCode(res)).toBe("FORBIDDEN");
      const rows = await server.app.db.dataSource.query(
        `SELECT 1 FROM accounts WHERE name = 'sneaky'`,
      );
      expect(rows).toHaveLength(0);
    });

    it("refuses createAccount to a client token with FORBIDDEN", async () => {
      const token = await clientToken(acme.key, "u1");
      const res = await gql(server.url, CREATE_ACCOUNT, { name: "sneaky" }, token);
      expect(errorCode(res)).toBe("FORBIDDEN");
    });

    it.each([
      ["that is empty", ""],
      ["that is blank", "   "],
      ["of 201 characters", "n".repeat(201)],
      ["with a NUL character", "acme\u0000corp"],
    ])("refuses an account name %s with BAD_USER_INPUT", async (_name, name) => {
      const res = await gql(server.url, CREATE_ACCOUNT, { name }, admin);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("name");
    });
  });

  describe("createApiKey", () => {
    it("lets a PARTNER create another PARTNER key for its own account", async () => {
      const res = await gql(server.url, CREATE_API_KEY, { role: "PARTNER", label: "ci" }, acme.key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.createApiKey).toMatchObject({ role: "PARTNER", label: "ci" });
      const me = await gql(server.url, VIEWER, {}, res.data!.createApiKey.key);
      expect(me.data!.viewer.account.id).toBe(acme.accountId);
    });

    it("lets a PARTNER name its own account explicitly", async () => {
      const res = await gql(
        server.url,
        CREATE_API_KEY,
        { role: "PARTNER", accountId: acme.accountId },
        acme.key,
      );
      expect(res.errors).toBeUndefined();
      const me = await gql(server.url, VIEWER, {}, res.data!.createApiKey.key);
      expect(me.data!.viewer.account.id).toBe(acme.accountId);
    });

    it("refuses an ADMIN key to a PARTNER with FORBIDDEN", async () => {
      const res = await gql(server.url, CREATE_API_KEY, { role: "ADMIN" }, acme.key);
      expect(errorCode(res)).toBe("FORBIDDEN");
    });

    it("refuses a PARTNER that names another account with FORBIDDEN", async () => {
      const res = await gql(
        server.url,
        CREATE_API_KEY,
        { role: "PARTNER", accountId: globex.accountId },
        acme.key,
      );
      expect(errorCode(res)).toBe("FORBIDDEN");
      const keys = await server.app.db.dataSource.query(
        `SELECT count(*)::int AS n FROM api_keys WHERE account_id = $1`,
        [globex.accountId],
      );
      expect(keys[0].n).toBe(1);
    });

    it("refuses createApiKey to a client token with FORBIDDEN", async () => {
      const token = await clientToken(acme.key, "u1");
      const res = await gql(server.url, CREATE_API_KEY, { role: "PARTNER" }, token);
      expect(errorCode(res)).toBe("FORBIDDEN");
    });

    it("lets an ADMIN create a key for a partner account it names", async () => {
      const res = await gql(
        server.url,
        CREATE_API_KEY,
        { role: "PARTNER", accountId: globex.accountId },
        admin,
      );
      expect(res.errors).toBeUndefined();
      const me = await gql(server.url, VIEWER, {}, res.data!.createApiKey.key);
      expect(me.data!.viewer).toMatchObject({
        role: "PARTNER",
        account: { id: globex.accountId },
      });
    });

    it.each([
      ["an unknown account", randomUUID()],
      ["a malformed account id", "not-a-uuid"],
    ])("answers an ADMIN naming %s with NOT_FOUND", async (_name, accountId) => {
      const res = await gql(server.url, CREATE_API_KEY, { role: "PARTNER", accountId }, admin);
      expect(errorCode(res)).toBe("NOT_FOUND");
    });

    it("refuses a label over 200 characters with BAD_USER_INPUT", async () => {
      const res = await gql(
        server.url,
        CREATE_API_KEY,
        { role: "PARTNER", label: "l".repeat(201) },
        acme.key,
      );
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("label");
    });

    it("refuses a label with a NUL character with BAD_USER_INPUT, not an internal error", async () => {
      const res = await gql(
        server.url,
        CREATE_API_KEY,
        { role: "PARTNER", label: "ci\u0000" },
        acme.key,
      );
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("label");
    });

    it("stores keys only as a SHA-256 hash, never the raw key", async () => {
      const res = await gql(server.url, CREATE_API_KEY, { role: "PARTNER" }, acme.key);
      const { id, key } = res.data!.createApiKey;
      const rows = await server.app.db.dataSource.query(`SELECT * FROM api_keys WHERE id = $1`, [
        id,
      ]);
      expect(rows).toHaveLength(1);
      expect(rows[0].key_hash).toBe(createHash("sha256").update(key).digest("hex"));
      const stored = JSON.stringify(rows[0]);
      expect(stored).not.toContain(key);
      // Nor a large part of it: the visible prefix is there to recognise a key, not to rebuild it.
      expect(stored).not.toContain(key.slice(0, 20));
    });
  });

  describe("revokeApiKey", () => {
    async function newKey(owner: string): Promise<{ id: string; key: string }> {
      const res = await gql(server.url, CREATE_API_KEY, { role: "PARTNER" }, owner);
      return res.data!.createApiKey;
    }

    it("makes a revoked key UNAUTHENTICATED afterwards", async () => {
      const k = await newKey(acme.key);
      expect((await gql(server.url, VIEWER, {}, k.key)).data!.viewer.role).toBe("PARTNER");
      const res = await gql(server.url, REVOKE, { id: k.id }, acme.key);
      expect(res.data!.revokeApiKey).toBe(true);
      const after = await gql(server.url, VIEWER, {}, k.key);
      expect(after.status).toBe(401);
      expect(errorCode(after)).toBe("UNAUTHENTICATED");
    });

    it("makes a revoked key UNAUTHENTICATED on another api process too", async () => {
      // Another replica on the same database and Redis, which has the key in its cache.
      const other = await startTestServer(env, { worker: false });
      try {
        const k = await newKey(acme.key);
        expect((await gql(other.url, VIEWER, {}, k.key)).data!.viewer.role).toBe("PARTNER");
        expect((await gql(server.url, REVOKE, { id: k.id }, acme.key)).data!.revokeApiKey).toBe(
          true,
        );
        // The revocation reaches the other process through Redis, well within a second.
        let code: unknown;
        for (let i = 0; i < 20 && code !== "UNAUTHENTICATED"; i++) {
          code = errorCode(await gql(other.url, VIEWER, {}, k.key));
          if (code !== "UNAUTHENTICATED") await new Promise((r) => setTimeout(r, 50));
        }
        expect(code).toBe("UNAUTHENTICATED");
      } finally {
        await other.stop();
      }
    });

    it("refuses a revoked key on a new WebSocket with close code 4403", async () => {
      expect.assertions(1);
      const k = await newKey(acme.key);
      await gql(server.url, REVOKE, { id: k.id }, acme.key);
      const ws = socket(k.key);
      ws.subscribe(WATCH, { id: randomUUID() });
      expect(await ws.closed).toBe(4403);
    });

    it("answers a PARTNER revoking another account's key with NOT_FOUND, and that key still works", async () => {
      const theirs = await newKey(globex.key);
      const res = await gql(server.url, REVOKE, { id: theirs.id }, acme.key);
      expect(errorCode(res)).toBe("NOT_FOUND");
      const me = await gql(server.url, VIEWER, {}, theirs.key);
      expect(me.data!.viewer.account.id).toBe(globex.accountId);
      const row = await server.app.db.dataSource.query(
        `SELECT revoked_at FROM api_keys WHERE id = $1`,
        [theirs.id],
      );
      expect(row[0].revoked_at).toBeNull();
    });

    it("lets an ADMIN revoke any account's key", async () => {
      const theirs = await newKey(globex.key);
      const res = await gql(server.url, REVOKE, { id: theirs.id }, admin);
      expect(res.data!.revokeApiKey).toBe(true);
      expect(errorCode(await gql(server.url, VIEWER, {}, theirs.key))).toBe("UNAUTHENTICATED");
    });

    it.each([
      ["a malformed id", "not-a-uuid"],
      ["an unknown id", randomUUID()],
    ])("answers %s with NOT_FOUND", async (_name, id) => {
      const res = await gql(server.url, REVOKE, { id }, acme.key);
      expect(errorCode(res)).toBe("NOT_FOUND");
    });

    it("answers revoking a key twice with NOT_FOUND the second time", async () => {
      const k = await newKey(acme.key);
      expect((await gql(server.url, REVOKE, { id: k.id }, acme.key)).data!.revokeApiKey).toBe(true);
      expect(errorCode(await gql(server.url, REVOKE, { id: k.id }, acme.key))).toBe("NOT_FOUND");
    });

    it("refuses revokeApiKey to a client token with FORBIDDEN", async () => {
      const k = await newKey(acme.key);
      const token = await clientToken(acme.key, "u1");
      expect(errorCode(await gql(server.url, REVOKE, { id: k.id }, token))).toBe("FORBIDDEN");
      expect((await gql(server.url, VIEWER, {}, k.key)).data!.viewer.role).toBe("PARTNER");
    });
  });

  describe("client tokens", () => {
    it("mints a token that expires after ttlSeconds", async () => {
      const before = Date.now();
      const res = await gql(server.url, CLIENT_TOKEN, { userId: "u1", ttlSeconds: 600 }, acme.key);
      expect(res.errors).toBeUndefined();
      const expiresAt = Date.parse(res.data!.createClientToken.expiresAt);
      expect(expiresAt).toBeGreaterThanOrEqual(before + 599_000);
      expect(expiresAt).toBeLessThanOrEqual(Date.now() + 601_000);
      const claims = jwt.decode(res.data!.createClientToken.token) as { exp: number };
      expect(claims.exp * 1000).toBe(expiresAt);
    });

    it.each([0, -1, 86401])("refuses ttlSeconds %p with BAD_USER_INPUT", async (ttlSeconds) => {
      const res = await gql(server.url, CLIENT_TOKEN, { userId: "u1", ttlSeconds }, acme.key);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("ttlSeconds");
    });

    it.each([
      ["that is empty", ""],
      ["with a leading space", " u1"],
      ["with a trailing space", "u1 "],
      ["of 201 characters", "u".repeat(201)],
      // Postgres text cannot hold NUL: such a user could never generate or be charged.
      ["with a NUL character", "u\u00001"],
    ])("refuses a userId %s with BAD_USER_INPUT", async (_name, userId) => {
      const res = await gql(server.url, CLIENT_TOKEN, { userId }, acme.key);
      expect(errorCode(res)).toBe("BAD_USER_INPUT");
      expect(res.errors![0]!.extensions!.field).toBe("userId");
    });

    it("refuses createClientToken to a client token with FORBIDDEN", async () => {
      const token = await clientToken(acme.key, "u1", { canGenerate: true });
      const res = await gql(server.url, CLIENT_TOKEN, { userId: "u2" }, token);
      expect(errorCode(res)).toBe("FORBIDDEN");
    });

    it("accepts a token forged with the server's secret (control for the cases below)", async () => {
      const token = forgeToken({
        sub: "forged",
        acc: acme.accountId,
        exp: Math.floor(Date.now() / 1000) + 60,
      });
      const res = await gql(server.url, VIEWER, {}, token);
      expect(res.data!.viewer).toMatchObject({ role: "CLIENT", userId: "forged" });
    });

    it("refuses an expired client token with UNAUTHENTICATED and HTTP 401", async () => {
      const token = forgeToken({
        sub: "u1",
        acc: acme.accountId,
        gen: true,
        iat: Math.floor(Date.now() / 1000) - 120,
        exp: Math.floor(Date.now() / 1000) - 60,
      });
      const res = await gql(server.url, VIEWER, {}, token);
      expect(res.status).toBe(401);
      expect(errorCode(res)).toBe("UNAUTHENTICATED");
    });

    it("refuses a client token signed with another secret with UNAUTHENTICATED", async () => {
      const token = forgeToken(
        { sub: "u1", acc: acme.accountId, gen: true, exp: Math.floor(Date.now() / 1000) + 60 },
        "some-other-secret-some-other-secret-0000",
      );
      const res = await gql(server.url, VIEWER, {}, token);
      expect(res.status).toBe(401);
      expect(errorCode(res)).toBe("UNAUTHENTICATED");
    });

    it.each([
      ["issuer", { issuer: "someone-else" }],
      ["audience", { audience: "gengate-admin" }],
    ])("refuses a client token with the wrong %s with UNAUTHENTICATED", async (_name, opts) => {
      const token = forgeToken(
        { sub: "u1", acc: acme.accountId, exp: Math.floor(Date.now() / 1000) + 60 },
        TEST_SECRET,
        opts,
      );
      expect(errorCode(await gql(server.url, VIEWER, {}, token))).toBe("UNAUTHENTICATED");
    });

    it("refuses an unsigned (alg none) client token with UNAUTHENTICATED", async () => {
      const token = jwt.sign(
        { sub: "u1", acc: acme.accountId, gen: true, exp: Math.floor(Date.now() / 1000) + 60 },
        "",
        { algorithm: "none", issuer: "gengate", audience: "gengate-client" },
      );
      expect(errorCode(await gql(server.url, VIEWER, {}, token))).toBe("UNAUTHENTICATED");
    });

    it("refuses generate to a client token minted without canGenerate with FORBIDDEN", async () => {
      const token = await clientToken(acme.key, "watcher");
      const res = await gql(server.url, GENERATE, { input: IMAGE }, token);
      expect(errorCode(res)).toBe("FORBIDDEN");
      const rows = await server.app.db.dataSource.query(
        `SELECT 1 FROM generations WHERE user_id = 'watcher'`,
      );
      expect(rows).toHaveLength(0);
    });

    it("lets a client token with canGenerate generate for its own user, userId implied", async () => {
      const token = await clientToken(acme.key, "maker", { canGenerate: true });
      const res = await gql(server.url, GENERATE, { input: IMAGE }, token);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generate).toMatchObject({ userId: "maker", status: "QUEUED" });
      const rows = await server.app.db.dataSource.query(
        `SELECT account_id, user_id FROM generations WHERE id = $1`,
        [res.data!.generate.id],
      );
      expect(rows).toEqual([{ account_id: acme.accountId, user_id: "maker" }]);
    });

    it("lets a client token with canGenerate name its own userId", async () => {
      const token = await clientToken(acme.key, "maker", { canGenerate: true });
      const res = await gql(server.url, GENERATE, { input: { ...IMAGE, userId: "maker" } }, token);
      expect(res.data!.generate.userId).toBe("maker");
    });

    it("refuses a client token naming another userId with FORBIDDEN", async () => {
      const token = await clientToken(acme.key, "maker", { canGenerate: true });
      const res = await gql(server.url, GENERATE, { input: { ...IMAGE, userId: "victim" } }, token);
      expect(errorCode(res)).toBe("FORBIDDEN");
      const rows = await server.app.db.dataSource.query(
        `SELECT 1 FROM generations WHERE user_id = 'victim'`,
      );
      expect(rows).toHaveLength(0);
    });
  });

  describe("over the WebSocket", () => {
    it("closes a connection with an unknown API key with code 4403", async () => {
      expect.assertions(2);
      const ws = socket(`gg_${"z".repeat(43)}`);
      const sub = ws.subscribe(WATCH, { id: randomUUID() });
      expect(await ws.closed).toBe(4403);
      await sub.completed.promise;
      expect(sub.messages).toHaveLength(0);
    });

    it("closes a connection with an expired client token with code 4403", async () => {
      expect.assertions(1);
      const token = forgeToken({
        sub: "u1",
        acc: acme.accountId,
        exp: Math.floor(Date.now() / 1000) - 60,
      });
      const ws = socket(token);
      ws.subscribe(WATCH, { id: randomUUID() });
      expect(await ws.closed).toBe(4403);
    });

    it("closes a connection with a malformed authorization with code 4403", async () => {
      expect.assertions(1);
      // wsClient always sends `Bearer …`: a raw graphql-ws client sends a Basic value instead.
      const code = deferred<number>();
      const client = createClient({
        url: server.url.replace(/^http/, "ws") + "/graphql",
        webSocketImpl: WebSocket,
        lazy: true,
        retryAttempts: 0,
        connectionParams: { authorization: "Basic dXNlcjpwYXNz" },
        on: { closed: (e) => code.resolve((e as { code: number }).code) },
      });
      rawClients.push(client);
      client.subscribe(
        { query: WATCH, variables: { id: randomUUID() } },
        { next: () => undefined, error: () => undefined, complete: () => undefined },
      );
      expect(await code.promise).toBe(4403);
    });

    it("fails each subscription on a connection without credentials with UNAUTHENTICATED", async () => {
      expect.assertions(2);
      const ws = socket();
      const one = ws.subscribe(WATCH, { id: randomUUID() });
      const all = ws.subscribe(`subscription { generationsUpdated { type } }`);
      const [e1, e2] = await Promise.all([one.error(), all.error()]);
      expect(e1[0].extensions.code).toBe("UNAUTHENTICATED");
      expect(e2[0].extensions.code).toBe("UNAUTHENTICATED");
    });

    it("lets a valid client token subscribe to its own user's generation", async () => {
      expect.assertions(2); // one in clientToken()
      const token = await clientToken(acme.key, "ws-user", { canGenerate: true });
      const res = await gql(server.url, GENERATE, { input: IMAGE }, token);
      const id = res.data!.generate.id;
      const sub = socket(token).subscribe(WATCH, { id });
      const first = await sub.until(() => true);
      expect(first.generationUpdated.generation.id).toBe(id);
      sub.stop();
    });
  });
});
