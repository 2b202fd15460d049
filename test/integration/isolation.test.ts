import {
  gql,
  errorCode,
  wsClient,
  type SubscriptionRecorder,
  type WsClient,
} from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id userId status } }`;
const GET = `query($id: ID!) { generation(id: $id) { id userId status prompt } }`;
const LIST = `query($userId: ID, $accountId: ID, $status: GenerationStatus, $first: Int) {
  generations(userId: $userId, accountId: $accountId, status: $status, first: $first) {
    totalCount edges { node { id userId } }
  }
}`;
const CANCEL = `mutation($id: ID!) { cancelGeneration(id: $id) { id status } }`;
const CLIENT_TOKEN = `mutation($userId: ID!, $canGenerate: Boolean) {
  createClientToken(userId: $userId, canGenerate: $canGenerate) { token }
}`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) { type generation { id userId status } }
}`;
const WATCH_USER = `subscription($userId: ID, $accountId: ID) {
  generationsUpdated(userId: $userId, accountId: $accountId) { type generation { id userId status } }
}`;

const SLOW = "[sim:latency=60000]";

interface Party {
  accountId: string;
  key: string;
}

describe("no account sees or touches another account's data", () => {
  let env: TestEnv;
  let server: TestServer;
  let admin: string;
  let a: Party;
  let b: Party;
  /** A's client token for its end user u1, allowed to generate (and so to cancel). */
  let u1Token: string;
  /** A's client token for its end user u2. */
  let u2Token: string;
  /** A's generation for its user u2. */
  let aU2: string;
  /** A's generation for its user u1. */
  let aU1: string;
  /** B's generation for its own user named "u1": same string, another person. */
  let bU1: string;
  /** B's generation for its own user named "u2". */
  let bU2: string;
  const sockets: WsClient[] = [];
  const running: Array<{ id: string; key: string }> = [];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env);
    admin = await adminKey(server);
    a = await partner(server, admin, "alpha");
    b = await partner(server, admin, "beta");
    u1Token = await clientToken(a.key, "u1", true);
    u2Token = await clientToken(a.key, "u2", false);
    aU2 = await generate(a.key, { userId: "u2", prompt: "alpha's secret for u2" });
    aU1 = await generate(a.key, { userId: "u1", prompt: "alpha's picture for u1" });
    bU1 = await generate(b.key, { userId: "u1", prompt: "beta's picture for its u1" });
    bU2 = await generate(b.key, { userId: "u2", prompt: "beta's picture for its u2" });
  });

  afterAll(async () => {
    if (server) for (const r of running) await gql(server.url, CANCEL, { id: r.id }, r.key);
    await Promise.all(sockets.map((s) => s.dispose()));
    await server?.stop();
    await env?.cleanup();
  });

  async function clientToken(key: string, userId: string, canGenerate: boolean): Promise<string> {
    const res = await gql(server.url, CLIENT_TOKEN, { userId, canGenerate }, key);
    if (!res.data) throw new Error(JSON.stringify(res.errors));
    return res.data.createClientToken.token;
  }

  async function generate(
    credential: string,
    input: { userId?: string; prompt: string; idempotencyKey?: string },
  ): Promise<string> {
    const res = await gql(
      server.url,
      GENERATE,
      { input: { mediaType: "IMAGE", width: 128, height: 128, ...input } },
      credential,
    );
    if (!res.data) throw new Error(JSON.stringify(res.errors));
    return res.data.generate.id;
  }

  /** A generation that stays PROCESSING until canceled (in the test or in afterAll). */
  async function slow(credential: string, ownerKey: string, userId?: string): Promise<string> {
    const id = await generate(credential, { userId, prompt: `keep me busy ${SLOW}` });
    running.push({ id, key: ownerKey });
    return id;
  }

  function socket(credential: string): WsClient {
    const s = wsClient(server.url, credential);
    sockets.push(s);
    return s;
  }

  async function dbRow(id: string): Promise<{ status: string; error: unknown; version: number }> {
    const rows = await server.app.db.dataSource.query(
      `SELECT status, error, version FROM generations WHERE id = $1`,
      [id],
    );
    return rows[0];
  }

  async function ids(
    credential: string,
    vars: Record<string, unknown> = {},
  ): Promise<{ totalCount: number; ids: string[]; userIds: string[] }> {
    const res = await gql(server.url, LIST, { first: 100, ...vars }, credential);
    expect(res.errors).toBeUndefined();
    const edges = res.data!.generations.edges as Array<{ node: { id: string; userId: string } }>;
    return {
      totalCount: res.data!.generations.totalCount,
      ids: edges.map((e) => e.node.id),
      userIds: edges.map((e) => e.node.userId),
    };
  }

  async function idsInDb(accountId: string, userId?: string): Promise<string[]> {
    const rows: Array<{ id: string }> = await server.app.db.dataSource.query(
      `SELECT id FROM generations WHERE account_id = $1 AND ($2::text IS NULL OR user_id = $2)`,
      [accountId, userId ?? null],
    );
    return rows.map((r) => r.id);
  }

  describe("generation(id)", () => {
    it("answers another account's generation with null, not an error", async () => {
      const res = await gql(server.url, GET, { id: aU2 }, b.key);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
    });

    it("lets the owner read its generation (control)", async () => {
      const res = await gql(server.url, GET, { id: aU2 }, a.key);
      expect(res.data!.generation).toMatchObject({ id: aU2, userId: "u2" });
    });

    it("answers a client token asking for another user's generation in its account with null", async () => {
      const res = await gql(server.url, GET, { id: aU2 }, u1Token);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
      const own = await gql(server.url, GET, { id: aU1 }, u1Token);
      expect(own.data!.generation).toMatchObject({ id: aU1, userId: "u1" });
    });

    it("answers a client token asking for another account's generation of a same-named user with null", async () => {
      const res = await gql(server.url, GET, { id: bU1 }, u1Token);
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
    });

    it("lets an ADMIN read any account's generation", async () => {
      for (const id of [aU2, bU1]) {
        const res = await gql(server.url, GET, { id }, admin);
        expect(res.data!.generation).toMatchObject({ id });
      }
    });
  });

  describe("generations", () => {
    it("lists only the caller's account, and counts only it", async () => {
      const list = await ids(b.key);
      const expected = await idsInDb(b.accountId);
      expect(list.ids.sort()).toEqual(expected.sort());
      expect(list.totalCount).toBe(expected.length);
      expect(list.ids).not.toContain(aU2);
      expect(list.ids).not.toContain(aU1);
    });

    it("does not leak another account's generations through the userId filter", async () => {
      const list = await ids(b.key, { userId: "u2" });
      expect(list.ids).toEqual([bU2]);
      expect(list.totalCount).toBe(1);
    });

    it("does not leak another account's generations through the status filter", async () => {
      const list = await ids(b.key, { status: "QUEUED" });
      const succeeded = await ids(b.key, { status: "SUCCEEDED" });
      const processing = await ids(b.key, { status: "PROCESSING" });
      const all = [...list.ids, ...succeeded.ids, ...processing.ids];
      expect(all).not.toContain(aU2);
      expect(all).not.toContain(aU1);
    });

    it("lists only the client token's own user, whatever userId it filters on", async () => {
      const own = await ids(u1Token);
      expect(new Set(own.userIds)).toEqual(new Set(["u1"]));
      expect(own.ids.sort()).toEqual((await idsInDb(a.accountId, "u1")).sort());
      expect(own.totalCount).toBe(own.ids.length);
      expect(own.ids).not.toContain(bU1);

      const other = await gql(server.url, LIST, { userId: "u2" }, u1Token);
      const leaked = (other.data?.generations.edges ?? []).filter(
        (e: { node: { userId: string } }) => e.node.userId !== "u1",
      );
      expect(leaked).toEqual([]);
    });

    it.each([
      ["a PARTNER", () => b.key],
      ["a client token", () => u1Token],
    ])("refuses %s naming an accountId with FORBIDDEN", async (_name, credential) => {
      const res = await gql(server.url, LIST, { accountId: a.accountId }, credential());
      expect(errorCode(res)).toBe("FORBIDDEN");
      expect(res.data?.generations ?? null).toBeNull();
    });

    it("lets an ADMIN list one named account", async () => {
      const list = await ids(admin, { accountId: a.accountId });
      const expected = await idsInDb(a.accountId);
      expect(list.ids.sort()).toEqual(expected.sort());
      expect(list.totalCount).toBe(expected.length);
    });
  });

  describe("cancelGeneration", () => {
    it("answers another account's cancel with NOT_FOUND and leaves the generation running", async () => {
      const id = await slow(a.key, a.key, "u2");
      const watch = socket(a.key).subscribe(WATCH, { id });
      await watch.until((m) => m.generationUpdated.generation.status === "PROCESSING");

      const res = await gql(server.url, CANCEL, { id }, b.key);
      expect(errorCode(res)).toBe("NOT_FOUND");
      expect(res.data?.cancelGeneration ?? null).toBeNull();
      const row = await dbRow(id);
      expect(row.status).toBe("PROCESSING");
      expect(row.error).toBeNull();
      const attempts = await server.app.db.dataSource.query(
        `SELECT status FROM attempts WHERE generation_id = $1`,
        [id],
      );
      expect(attempts).toEqual([{ status: "RUNNING" }]);

      // It was cancelable all along: its owner can.
      const own = await gql(server.url, CANCEL, { id }, a.key);
      expect(own.data!.cancelGeneration.status).toBe("CANCELED");
      await watch.until((m) => m.generationUpdated.type === "CANCELED");
    });

    it("answers a client token canceling another user's generation with NOT_FOUND", async () => {
      const id = await slow(a.key, a.key, "u2");
      const res = await gql(server.url, CANCEL, { id }, u1Token);
      expect(errorCode(res)).toBe("NOT_FOUND");
      const after = await dbRow(id);
      expect(["QUEUED", "PROCESSING"]).toContain(after.status);
      expect(after.error).toBeNull();
    });

    it("refuses cancel to a client token without canGenerate, even for its own user", async () => {
      const id = await slow(a.key, a.key, "u2");
      const res = await gql(server.url, CANCEL, { id }, u2Token);
      expect(errorCode(res)).toBe("FORBIDDEN");
      expect((await dbRow(id)).status).not.toBe("CANCELED");
    });
  });

  describe("generationUpdated", () => {
    it("fails another account's subscription with NOT_FOUND", async () => {
      expect.assertions(2);
      const sub = socket(b.key).subscribe(WATCH, { id: aU2 });
      const err = await sub.error();
      expect(err[0].extensions.code).toBe("NOT_FOUND");
      expect(sub.messages).toEqual([]);
    });

    it("fails a client token's subscription to another user's generation with NOT_FOUND", async () => {
      expect.assertions(2);
      const sub = socket(u1Token).subscribe(WATCH, { id: aU2 });
      const err = await sub.error();
      expect(err[0].extensions.code).toBe("NOT_FOUND");
      expect(sub.messages).toEqual([]);
    });

    it("lets the user's own client token subscribe to it (control)", async () => {
      expect.assertions(1);
      const sub = socket(u2Token).subscribe(WATCH, { id: aU2 });
      const first = await sub.until(() => true);
      expect(first.generationUpdated.generation.id).toBe(aU2);
      sub.stop();
    });
  });

  describe("generationsUpdated", () => {
    it("refuses a client token naming another user with FORBIDDEN", async () => {
      expect.assertions(1);
      const err = await socket(u1Token).subscribe(WATCH_USER, { userId: "u2" }).error();
      expect(err[0].extensions.code).toBe("FORBIDDEN");
    });

    it("refuses a PARTNER naming another account with FORBIDDEN", async () => {
      expect.assertions(1);
      const err = await socket(b.key)
        .subscribe(WATCH_USER, { userId: "shared", accountId: a.accountId })
        .error();
      expect(err[0].extensions.code).toBe("FORBIDDEN");
    });

    it("streams nothing of another account's same-named user, nor of another user to a client token", async () => {
      // Each stream starts with its viewer's unfinished generations: an anchor that never
      // finishes proves the subscription is live before anything else is created.
      const bAnchor = await slow(b.key, b.key, "shared");
      const u1Anchor = await slow(u1Token, a.key);
      const bUser = socket(b.key).subscribe(WATCH_USER, { userId: "shared" });
      const bAccount = socket(b.key).subscribe(WATCH_USER, {});
      const u1Stream = socket(u1Token).subscribe(WATCH_USER, {});
      await bUser.until((m) => m.generationsUpdated.generation.id === bAnchor);
      await bAccount.until((m) => m.generationsUpdated.generation.id === bAnchor);
      await u1Stream.until((m) => m.generationsUpdated.generation.id === u1Anchor);

      // A's jobs (for the same "shared" user id, and for u2) and B's "u1" run to the end first.
      const foreign = [
        await generate(a.key, { userId: "shared", prompt: "alpha shared" }),
        await generate(a.key, { userId: "u2", prompt: "alpha u2 again" }),
        await generate(b.key, { userId: "u1", prompt: "beta u1 again" }),
      ];
      for (const [id, key] of [
        [foreign[0]!, a.key],
        [foreign[1]!, a.key],
        [foreign[2]!, b.key],
      ] as const) {
        await socket(key)
          .subscribe(WATCH, { id })
          .until((m) => m.generationUpdated.type === "SUCCEEDED");
      }

      // Then each viewer's own job: once its end has arrived, anything foreign would have too.
      const bOwn = await generate(b.key, { userId: "shared", prompt: "beta shared" });
      const u1Own = await generate(u1Token, { prompt: "u1's own" });
      const succeeded =
        (id: string) => (m: { generationsUpdated: { type: string; generation: { id: string } } }) =>
          m.generationsUpdated.generation.id === id && m.generationsUpdated.type === "SUCCEEDED";
      await bUser.until(succeeded(bOwn));
      await bAccount.until(succeeded(bOwn));
      await u1Stream.until(succeeded(u1Own));

      const seen = (s: SubscriptionRecorder) =>
        s.messages.map((m) => m.generationsUpdated.generation.id as string);
      for (const id of [foreign[0]!, foreign[1]!]) {
        expect(seen(bUser)).not.toContain(id);
        expect(seen(bAccount)).not.toContain(id);
      }
      expect(seen(u1Stream)).not.toContain(foreign[0]);
      expect(seen(u1Stream)).not.toContain(foreign[1]);
      expect(seen(u1Stream)).not.toContain(foreign[2]);
      expect(new Set(bUser.messages.map((m) => m.generationsUpdated.generation.userId))).toEqual(
        new Set(["shared"]),
      );
      expect(new Set(u1Stream.messages.map((m) => m.generationsUpdated.generation.userId))).toEqual(
        new Set(["u1"]),
      );
      for (const s of [bUser, bAccount, u1Stream]) s.stop();
    });
  });

  describe("client tokens and keys", () => {
    it("gives a client token minted by B for a user id that A also has nothing of A's", async () => {
      const bU2Token = await clientToken(b.key, "u2", true);
      expect((await gql(server.url, GET, { id: aU2 }, bU2Token)).data!.generation).toBeNull();
      const list = await ids(bU2Token);
      expect(list.ids).toEqual([bU2]);
      expect(list.totalCount).toBe(1);
      expect(errorCode(await gql(server.url, CANCEL, { id: aU2 }, bU2Token))).toBe("NOT_FOUND");
      const err = await socket(bU2Token).subscribe(WATCH, { id: aU2 }).error();
      expect(err[0].extensions.code).toBe("NOT_FOUND");
    });

    it("shows each key its own account in viewer", async () => {
      const q = `{ viewer { role account { id } } }`;
      expect((await gql(server.url, q, {}, b.key)).data!.viewer.account.id).toBe(b.accountId);
      expect((await gql(server.url, q, {}, u1Token)).data!.viewer.account.id).toBe(a.accountId);
    });

    it("lets B neither create nor revoke keys of A", async () => {
      const created = await gql(
        server.url,
        `mutation($accountId: ID) { createApiKey(role: PARTNER, accountId: $accountId) { key } }`,
        { accountId: a.accountId },
        b.key,
      );
      expect(errorCode(created)).toBe("FORBIDDEN");
      const [aKey] = await server.app.db.dataSource.query(
        `SELECT id FROM api_keys WHERE account_id = $1 LIMIT 1`,
        [a.accountId],
      );
      const revoked = await gql(
        server.url,
        `mutation($id: ID!) { revokeApiKey(id: $id) }`,
        { id: aKey.id },
        b.key,
      );
      expect(errorCode(revoked)).toBe("NOT_FOUND");
      expect((await gql(server.url, GET, { id: aU2 }, a.key)).data!.generation.id).toBe(aU2);
    });
  });

  describe("per-account identities", () => {
    it("keeps idempotency keys per account: the same key in two accounts makes two generations", async () => {
      const input = { userId: "u2", prompt: "idempotent per account", idempotencyKey: "order-7" };
      const inA = await generate(a.key, input);
      const inB = await generate(b.key, input);
      expect(inB).not.toBe(inA);
      // Other parameters under the same key in another account are no conflict either.
      const res = await gql(
        server.url,
        GENERATE,
        {
          input: {
            mediaType: "IMAGE",
            width: 128,
            height: 128,
            userId: "someone",
            prompt: "something else entirely",
            idempotencyKey: "order-7",
          },
        },
        (await partner(server, admin, "gamma")).key,
      );
      expect(res.errors).toBeUndefined();
      // And each account still gets its own back on a retry.
      expect(await generate(a.key, input)).toBe(inA);
      expect(await generate(b.key, input)).toBe(inB);
      const rows = await server.app.db.dataSource.query(
        `SELECT id, account_id FROM generations WHERE idempotency_key = 'order-7' ORDER BY account_id`,
      );
      expect(rows).toHaveLength(3);
      expect((await gql(server.url, GET, { id: inA }, b.key)).data!.generation).toBeNull();
      expect((await gql(server.url, GET, { id: inB }, a.key)).data!.generation).toBeNull();
    });

    it("never hands one client token's generation to another user's token reusing its idempotency key", async () => {
      const u3Token = await clientToken(a.key, "u3", true);
      const u4Token = await clientToken(a.key, "u4", true);
      const input = { prompt: "same request from two browsers", idempotencyKey: "client-retry-1" };
      const first = await generate(u3Token, input);
      const res = await gql(
        server.url,
        GENERATE,
        { input: { mediaType: "IMAGE", width: 128, height: 128, ...input } },
        u4Token,
      );
      // Either u4 gets its own generation or the reuse is refused; never u3's generation.
      if (res.errors) {
        expect(errorCode(res)).toBe("IDEMPOTENCY_CONFLICT");
      } else {
        expect(res.data!.generate.id).not.toBe(first);
        expect(res.data!.generate.userId).toBe("u4");
      }
      // And u4's token still cannot read u3's generation directly.
      expect((await gql(server.url, GET, { id: first }, u4Token)).data!.generation).toBeNull();
    });

    it("treats the same userId in two accounts as two end users", async () => {
      const rows: Array<{ id: string; account_id: string }> = await server.app.db.dataSource.query(
        `SELECT id, account_id FROM end_users WHERE user_id = 'u1'`,
      );
      expect(rows.map((r) => r.account_id).sort()).toEqual([a.accountId, b.accountId].sort());
      const gens: Array<{ id: string; end_user_id: string }> = await server.app.db.dataSource.query(
        `SELECT id, end_user_id FROM generations WHERE id = ANY($1)`,
        [[aU1, bU1]],
      );
      const byId = new Map(gens.map((g) => [g.id, g.end_user_id]));
      const endUserOf = (accountId: string) => rows.find((r) => r.account_id === accountId)!.id;
      expect(byId.get(aU1)).toBe(endUserOf(a.accountId));
      expect(byId.get(bU1)).toBe(endUserOf(b.accountId));
      expect(byId.get(aU1)).not.toBe(byId.get(bU1));
    });
  });
});
