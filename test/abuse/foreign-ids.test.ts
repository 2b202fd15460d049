import "reflect-metadata";
import {
  getNamedType,
  isInputObjectType,
  type GraphQLArgument,
  type GraphQLObjectType,
} from "graphql";
import { buildGraphQLSchema } from "../../src/graphql/schema";
import { expectNoLeak, initSocket, operate, type RawSocket } from "../helpers/abuse";
import { gql, type GraphQLResponse } from "../helpers/graphql";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

/** B's things, which A must never see. */
const B_PROMPT = "beta-private-prompt-4e1b";
const B_USER = "beta-user-0a77";
const B_LIMIT = 777.77;
const B_WEBHOOK = "http://127.0.0.1:9/beta-hook-9d1";

/** Whether an argument (or a field of its input type, one level down) takes an id. */
function idArgs(args: readonly GraphQLArgument[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    const named = getNamedType(a.type);
    if (named.name === "ID" || /(^id|Id)$/.test(a.name)) out.push(a.name);
    if (isInputObjectType(named)) {
      for (const f of Object.values(named.getFields())) {
        if (getNamedType(f.type).name === "ID" || /(^id|Id)$/.test(f.name)) {
          out.push(`${a.name}.${f.name}`);
        }
      }
    }
  }
  return out;
}

describe("another account's ids, everywhere an id is accepted", () => {
  let env: TestEnv;
  let server: TestServer;
  let aKey: string;
  let b: { accountId: string; key: string };
  let bGeneration: string;
  let bKeyId: string;
  let socket: RawSocket;
  const secrets = [B_PROMPT, B_WEBHOOK, String(B_LIMIT)];

  beforeAll(async () => {
    env = await createTestEnv();
    server = await startTestServer(env, {
      worker: false,
      overrides: { CALLBACKS_ALLOW_PRIVATE: "true" },
    });
    const admin = await adminKey(server);
    aKey = (await partner(server, admin, "alpha-ids")).key;
    b = await partner(server, admin, "beta-ids");
    const gen = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { id } }`,
      { input: { mediaType: "IMAGE", userId: B_USER, prompt: B_PROMPT, width: 64, height: 64 } },
      b.key,
    );
    bGeneration = gen.data!.generate.id;
    const budget = await gql(
      server.url,
      `mutation($u: ID!, $l: Float!) { setBudget(userId: $u, monthlyLimitUsd: $l) { limitUsd } }`,
      { u: B_USER, l: B_LIMIT },
      b.key,
    );
    expect(budget.errors).toBeUndefined();
    const hook = await gql(
      server.url,
      `mutation($u: String) { setAlertWebhook(url: $u) }`,
      { u: B_WEBHOOK },
      b.key,
    );
    expect(hook.errors).toBeUndefined();
    const [row] = await server.app.db.dataSource.query(
      `SELECT id FROM api_keys WHERE account_id = $1 LIMIT 1`,
      [b.accountId],
    );
    bKeyId = row.id;
    const init = await initSocket(server.url, aKey);
    expect(init.ack.type).toBe("connection_ack");
    socket = init.socket;
  });

  afterAll(async () => {
    socket?.ws.terminate();
    await server?.stop();
    await env?.cleanup();
  });

  type Res = GraphQLResponse<any>;
  const asA = (query: string, variables: Record<string, unknown> = {}): Promise<Res> =>
    gql(server.url, query, variables, aKey);
  const code = (res: Res) => res.errors?.[0]?.extensions?.code;
  const refused = (res: Res) => {
    expect(["NOT_FOUND", "FORBIDDEN"]).toContain(code(res));
  };
  /** A subscription refused as it starts answers `next` with errors (or `error`). */
  const errorsOf = (answer: any) =>
    answer.type === "error" ? answer.payload : answer.payload.errors;
  let opId = 0;
  /** A subscription's first answer (an error, or the current state it starts with). */
  const subscribeAsA = async (query: string, variables: Record<string, unknown>) => {
    const id = `s${opId++}`;
    const answer = await operate(socket, id, { query, variables });
    socket.send({ id, type: "complete" });
    return answer;
  };

  /** B's budget and webhook, unchanged by anything A did. */
  async function bUntouched(): Promise<void> {
    const res = await gql(
      server.url,
      `query($u: ID!) { budget(userId: $u) { limitUsd } }`,
      { u: B_USER },
      b.key,
    );
    expect(res.data!.budget.limitUsd).toBe(B_LIMIT);
    const viewer = await gql(server.url, `{ viewer { role } }`, {}, b.key);
    expect(viewer.data!.viewer.role).toBe("PARTNER");
  }

  /**
   * One case per root field with an id argument, named `Type.field`. Each calls the field as
   * A's PARTNER key with B's ids and checks A is refused or sees only its own.
   */
  const cases: Record<string, () => Promise<Res | unknown>> = {
    "Query.budget": async () => {
      refused(
        await asA(`query($a: ID) { budget(userId: "x", accountId: $a) { limitUsd } }`, {
          a: b.accountId,
        }),
      );
      // B's user id names A's own end user of that name: a fresh budget, not B's.
      const own = await asA(
        `query($u: ID!) { budget(userId: $u) { limitUsd spentUsd reservedUsd } }`,
        { u: B_USER },
      );
      expect(own.data!.budget.limitUsd).not.toBe(B_LIMIT);
      return own;
    },
    "Query.callbackSecret": async () => {
      const res = await asA(`query($a: ID) { callbackSecret(accountId: $a) }`, { a: b.accountId });
      refused(res);
      return res;
    },
    "Query.generation": async () => {
      const res = await asA(`query($id: ID!) { generation(id: $id) { id prompt } }`, {
        id: bGeneration,
      });
      expect(res.errors).toBeUndefined();
      expect(res.data!.generation).toBeNull();
      return res;
    },
    "Query.generations": async () => {
      refused(
        await asA(`query($a: ID) { generations(accountId: $a) { totalCount } }`, {
          a: b.accountId,
        }),
      );
      const own = await asA(
        `query($u: ID) { generations(userId: $u) { totalCount edges { node { id prompt } } } }`,
        { u: B_USER },
      );
      const ids = own.data!.generations.edges.map((e: { node: { id: string } }) => e.node.id);
      expect(ids).not.toContain(bGeneration);
      return own;
    },
    "Query.usage": async () => {
      const res = await asA(
        `query($a: ID, $from: DateTime!, $to: DateTime!) { usage(from: $from, to: $to, accountId: $a) { generations } }`,
        {
          a: b.accountId,
          from: new Date(Date.now() - 86400000).toISOString(),
          to: new Date(Date.now() + 86400000).toISOString(),
        },
      );
      refused(res);
      return res;
    },
    "Query.estimateCost": async () => {
      const res = await asA(
        `query($i: GenerateInput!) { estimateCost(input: $i) { estimatedCostUsd } }`,
        {
          i: { mediaType: "IMAGE", userId: B_USER, prompt: "a cat", width: 64, height: 64 },
        },
      );
      expect(res.errors).toBeUndefined();
      return res;
    },
    "Mutation.cancelGeneration": async () => {
      const res = await asA(`mutation($id: ID!) { cancelGeneration(id: $id) { id status } }`, {
        id: bGeneration,
      });
      expect(code(res)).toBe("NOT_FOUND");
      const [row] = await server.app.db.dataSource.query(
        `SELECT status FROM generations WHERE id = $1`,
        [bGeneration],
      );
      expect(row.status).not.toBe("CANCELED");
      return res;
    },
    "Mutation.createApiKey": async () => {
      const res = await asA(
        `mutation($a: ID) { createApiKey(role: PARTNER, accountId: $a) { key } }`,
        { a: b.accountId },
      );
      refused(res);
      return res;
    },
    "Mutation.createClientToken": async () => {
      // A token for A's own user of that name: it sees nothing of B's.
      const res = await asA(`mutation($u: ID!) { createClientToken(userId: $u) { token } }`, {
        u: B_USER,
      });
      const token = res.data!.createClientToken.token;
      const seen = await gql(
        server.url,
        `query($id: ID!) { generation(id: $id) { id } }`,
        { id: bGeneration },
        token,
      );
      expect(seen.data!.generation).toBeNull();
      const list = await gql(server.url, `{ generations { totalCount } }`, {}, token);
      expect(list.data!.generations.totalCount).toBe(0);
      return seen;
    },
    "Mutation.generate": async () => {
      const res = await asA(`mutation($i: GenerateInput!) { generate(input: $i) { id userId } }`, {
        i: { mediaType: "IMAGE", userId: B_USER, prompt: "alpha's own", width: 64, height: 64 },
      });
      expect(res.data!.generate.id).not.toBe(bGeneration);
      const [row] = await server.app.db.dataSource.query(
        `SELECT account_id FROM generations WHERE id = $1`,
        [res.data!.generate.id],
      );
      expect(row.account_id).not.toBe(b.accountId);
      return res;
    },
    "Mutation.purgeCache": async () => {
      const res = await asA(`mutation($g: ID) { purgeCache(generationId: $g) { generations } }`, {
        g: bGeneration,
      });
      refused(res);
      return res;
    },
    "Mutation.revokeApiKey": async () => {
      const res = await asA(`mutation($id: ID!) { revokeApiKey(id: $id) }`, { id: bKeyId });
      expect(code(res)).toBe("NOT_FOUND");
      await bUntouched();
      return res;
    },
    "Mutation.setAccountBudget": async () => {
      const res = await asA(
        `mutation($a: ID) { setAccountBudget(accountId: $a, monthlyLimitUsd: 1) { limitUsd } }`,
        { a: b.accountId },
      );
      refused(res);
      return res;
    },
    "Mutation.setAlertWebhook": async () => {
      const res = await asA(`mutation($a: ID) { setAlertWebhook(accountId: $a, url: null) }`, {
        a: b.accountId,
      });
      refused(res);
      return res;
    },
    "Mutation.setBudget": async () => {
      refused(
        await asA(
          `mutation($a: ID) { setBudget(userId: "x", monthlyLimitUsd: 1, accountId: $a) { limitUsd } }`,
          { a: b.accountId },
        ),
      );
      const own = await asA(
        `mutation($u: ID!) { setBudget(userId: $u, monthlyLimitUsd: 3) { limitUsd } }`,
        { u: B_USER },
      );
      expect(own.data!.setBudget.limitUsd).toBe(3);
      await bUntouched();
      return own;
    },
    "Mutation.setSemanticCache": async () => {
      const res = await asA(
        `mutation($a: ID) { setSemanticCache(accountId: $a, enabled: false) { id } }`,
        { a: b.accountId },
      );
      refused(res);
      return res;
    },
    "Subscription.budgetAlerts": async () => {
      // A's own user of that name: accepted, and whatever comes is A's (nothing is raised here).
      const id = `s${opId++}`;
      socket.send({
        id,
        type: "subscribe",
        payload: {
          query: `subscription($u: ID) { budgetAlerts(userId: $u) { id message } }`,
          variables: { u: B_USER },
        },
      });
      socket.send({ id, type: "complete" });
      const after = await operate(socket, `after${id}`, { query: `{ viewer { role } }` });
      expect(after.payload.data.viewer.role).toBe("PARTNER");
      return socket.messages.filter((m) => m.id === id);
    },
    "Subscription.generationUpdated": async () => {
      const answer = await subscribeAsA(
        `subscription($id: ID!) { generationUpdated(id: $id) { generation { id prompt } } }`,
        { id: bGeneration },
      );
      expect(errorsOf(answer)[0].extensions.code).toBe("NOT_FOUND");
      expect(answer.payload.data ?? null).toBeNull();
      return answer;
    },
    "Subscription.generationsUpdated": async () => {
      const forbidden = await subscribeAsA(
        `subscription($a: ID) { generationsUpdated(accountId: $a) { type } }`,
        { a: b.accountId },
      );
      expect(errorsOf(forbidden)[0].extensions.code).toBe("FORBIDDEN");
      // A's own user of B's user's name starts with A's generation for it, never B's.
      const first = await subscribeAsA(
        `subscription($u: ID) { generationsUpdated(userId: $u) { generation { id prompt } } }`,
        { u: B_USER },
      );
      expect(first.type).toBe("next");
      expect(first.payload.data.generationsUpdated.generation.id).not.toBe(bGeneration);
      return first;
    },
  };

  it("has a case for every root field that takes an id, and no case for a field that does not", async () => {
    const schema = await buildGraphQLSchema();
    const withIds: string[] = [];
    for (const root of [
      schema.getQueryType(),
      schema.getMutationType(),
      schema.getSubscriptionType(),
    ]) {
      for (const f of Object.values((root as GraphQLObjectType).getFields())) {
        if (idArgs(f.args).length > 0) withIds.push(`${root!.name}.${f.name}`);
      }
    }
    expect(Object.keys(cases).sort()).toEqual(withIds.sort());
  });

  it.each(Object.keys(cases).sort())(
    "%s refuses B's ids or answers with A's own, leaking nothing of B's",
    async (name) => {
      const result = await cases[name]!();
      expectNoLeak(JSON.stringify(result), secrets);
      for (const m of socket.messages) expectNoLeak(JSON.stringify(m), secrets);
    },
  );
});
