import http from "node:http";
import Redis from "ioredis";
import { TEST_REDIS_URL } from "../helpers/redis";
import { errorCode, gql, wsClient, type WsClient } from "../helpers/graphql";
import { freePort } from "../helpers/ports";
import {
  adminKey,
  createTestEnv,
  partner,
  startTestServer,
  type TestEnv,
  type TestServer,
} from "../helpers/test-app";

const GENERATE = `mutation($input: GenerateInput!) {
  generate(input: $input) { id status cached estimatedCostUsd }
}`;
const BUDGET = `query($userId: ID!, $accountId: ID) {
  budget(userId: $userId, accountId: $accountId) {
    userId tier period limitUsd spentUsd reservedUsd remainingUsd percentUsed resetsAt
  }
}`;
const SET_BUDGET = `mutation($userId: ID!, $limit: Float!, $tier: Tier, $accountId: ID) {
  setBudget(userId: $userId, monthlyLimitUsd: $limit, tier: $tier, accountId: $accountId) {
    userId tier limitUsd spentUsd reservedUsd remainingUsd percentUsed
  }
}`;
const WATCH_USER = `subscription($userId: ID) {
  generationsUpdated(userId: $userId) { type generation { id status } }
}`;
/** sim-image-fast costs 0.003 USD whatever the size. */
const PRICE = 0.003;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("budgets: race-free reservations, settlement, warnings", () => {
  let env: TestEnv;
  let server: TestServer;
  let second: TestServer;
  let admin: string;
  let acme: { accountId: string; key: string };
  const sockets: WsClient[] = [];
  let seq = 0;

  beforeAll(async () => {
    env = await createTestEnv();
    const overrides = { CALLBACKS_ALLOW_PRIVATE: "true", SIM_LATENCY_MS: "100" };
    server = await startTestServer(env, { overrides });
    second = await startTestServer(env, { worker: false, overrides });
    admin = await adminKey(server);
    acme = await partner(server, admin, "acme");
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose()));
    await second.stop();
    await server.stop();
    await env.cleanup();
  });

  const one = async <T>(q: string, params: unknown[]) =>
    ((await server.app.db.dataSource.query(q, params)) as T[])[0]!;

  function input(userId: string, extra: Record<string, unknown> = {}) {
    return {
      userId,
      mediaType: "IMAGE",
      model: "sim-image-fast",
      prompt: `budget prompt ${++seq}`,
      width: 64,
      height: 64,
      cache: "BYPASS",
      ...extra,
    };
  }

  async function setBudget(userId: string, limit: number, key = acme.key) {
    const res = await gql(server.url, SET_BUDGET, { userId, limit }, key);
    expect(res.errors).toBeUndefined();
    return res.data!.setBudget;
  }

  /** Resolves once `n` generations of the user have reached a final state. */
  function finalStates(userId: string, n: number): Promise<void> {
    const ws = wsClient(server.url, acme.key);
    sockets.push(ws);
    const rec = ws.subscribe(WATCH_USER, { userId });
    const done = new Set<string>();
    return rec
      .until((m) => {
        const g = m.generationsUpdated.generation;
        if (["SUCCEEDED", "FAILED", "CANCELED"].includes(g.status)) done.add(g.id);
        return done.size >= n;
      })
      .then(() => rec.stop());
  }

  it("200 concurrent requests against a budget for 50: exactly 50 accepted, spent = usage", async () => {
    const userId = "race-user";
    await setBudget(userId, 50 * PRICE);
    // The stream is live before the first request, so no final state is missed.
    const ws = wsClient(server.url, acme.key);
    sockets.push(ws);
    const rec = ws.subscribe(WATCH_USER, { userId });
    await gql(server.url, BUDGET, { userId }, acme.key);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        gql((i % 2 ? second : server).url, GENERATE, { input: input(userId) }, acme.key),
      ),
    );
    const accepted = results.filter((r) => r.data?.generate);
    const refused = results.filter((r) => errorCode(r) === "BUDGET_EXCEEDED");
    expect(accepted).toHaveLength(50);
    expect(refused).toHaveLength(150);
    const ext = refused[0]!.errors![0]!.extensions as Record<string, unknown>;
    expect(ext).toMatchObject({ scope: "USER", limitUsd: 0.15, requestedUsd: PRICE });
    expect(ext.currentUsd as number).toBeLessThanOrEqual(0.15);
    expect(ext.currentUsd as number).toBeGreaterThan(0.15 - PRICE - 1e-9);
    expect(new Date(ext.resetsAt as string).getUTCDate()).toBe(1);
    // Spent + reserved never passes the limit; nothing was stored for a refused request.
    const ledger = await one<{ spent: string; reserved: string; lim: string }>(
      `SELECT b.spent_usd AS spent, b.reserved_usd AS reserved, b.limit_usd AS lim
         FROM budget_periods b JOIN end_users eu ON eu.id = b.end_user_id
        WHERE eu.account_id = $1 AND eu.user_id = $2`,
      [acme.accountId, userId],
    );
    expect(Number(ledger.spent) + Number(ledger.reserved)).toBeLessThanOrEqual(0.15 + 1e-9);
    const { n } = await one<{ n: number }>(
      `SELECT count(*)::int AS n FROM generations WHERE account_id = $1 AND user_id = $2`,
      [acme.accountId, userId],
    );
    expect(n).toBe(50);

    const ids = new Set(accepted.map((r) => r.data!.generate.id as string));
    const finished = new Set<string>();
    await rec.until((m) => {
      const g = m.generationsUpdated.generation;
      if (g.status === "SUCCEEDED") finished.add(g.id);
      return [...ids].every((id) => finished.has(id));
    });
    rec.stop();
    const budget = (await gql(server.url, BUDGET, { userId }, acme.key)).data!.budget;
    const usage = await one<{ sum: string }>(
      `SELECT COALESCE(sum(cost_usd), 0) AS sum FROM usage_records WHERE account_id = $1 AND user_id = $2`,
      [acme.accountId, userId],
    );
    expect(budget.reservedUsd).toBe(0);
    expect(budget.spentUsd).toBeCloseTo(Number(usage.sum), 6);
    expect(budget.spentUsd).toBeCloseTo(0.15, 6);
    expect(budget.remainingUsd).toBe(0);
    expect(budget.percentUsed).toBe(100);
  });

  it("releases the reservation when a generation fails or is canceled", async () => {
    const userId = "release-user";
    await setBudget(userId, 1);
    const done = finalStates(userId, 2);
    const failing = await gql(
      server.url,
      GENERATE,
      { input: input(userId, { prompt: `a storm [sim:fail] ${seq}` }) },
      acme.key,
    );
    const slow = await gql(
      server.url,
      GENERATE,
      { input: input(userId, { prompt: `a slow tide [sim:latency=60000] ${seq}` }) },
      acme.key,
    );
    const held = (await gql(server.url, BUDGET, { userId }, acme.key)).data!.budget;
    expect(held.reservedUsd).toBeCloseTo(2 * PRICE, 6);
    await gql(
      server.url,
      `mutation($id: ID!) { cancelGeneration(id: $id) { status } }`,
      { id: slow.data!.generate.id },
      acme.key,
    );
    expect(failing.data!.generate.status).toBe("QUEUED");
    await done;
    const after = (await gql(server.url, BUDGET, { userId }, acme.key)).data!.budget;
    expect(after).toMatchObject({ reservedUsd: 0, spentUsd: 0 });
  });

  it("a cache hit costs nothing and is served even with the budget spent", async () => {
    const userId = "hit-user";
    await setBudget(userId, PRICE);
    const done = finalStates(userId, 1);
    const first = await gql(
      server.url,
      GENERATE,
      { input: input(userId, { prompt: "a budget lighthouse", cache: "DEFAULT" }) },
      acme.key,
    );
    expect(first.data!.generate.status).toBe("QUEUED");
    await done;
    const refused = await gql(server.url, GENERATE, { input: input(userId) }, acme.key);
    expect(errorCode(refused)).toBe("BUDGET_EXCEEDED");
    const hit = await gql(
      server.url,
      GENERATE,
      { input: input(userId, { prompt: "A budget lighthouse", cache: "DEFAULT" }) },
      acme.key,
    );
    expect(hit.data!.generate).toMatchObject({ status: "SUCCEEDED", cached: true });
  });

  it("raises one warning at 80%, stored, published and sent to the alert webhook", async () => {
    const posts: string[] = [];
    const arrived = deferred<void>();
    const receiver = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => {
        posts.push(body);
        res.writeHead(200).end();
        arrived.resolve();
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => receiver.listen(port, "127.0.0.1", r));
    try {
      const globex = await partner(server, admin, "globex");
      const hook = await gql(
        server.url,
        `mutation($url: String) { setAlertWebhook(url: $url) }`,
        { url: `http://127.0.0.1:${port}/alerts` },
        globex.key,
      );
      expect(hook.errors).toBeUndefined();
      const userId = "warned-user";
      // Four generations fit (0.012 of 0.0125); the fourth crosses 80% (96%).
      await setBudget(userId, 0.0125, globex.key);
      const ws = wsClient(server.url, globex.key);
      sockets.push(ws);
      const alerts = ws.subscribe(
        `subscription($userId: ID) { budgetAlerts(userId: $userId) { id kind severity message data } }`,
        { userId },
      );
      // Live once the server's Redis subscription to the account's alerts exists.
      const channel = `${env.redisPrefix}:account-alerts:${globex.accountId}`;
      const redis = new Redis(TEST_REDIS_URL);
      try {
        for (;;) {
          const [, n] = (await redis.pubsub("NUMSUB", channel)) as [string, number];
          if (n > 0) break;
        }
      } finally {
        redis.disconnect();
      }
      const results = [];
      for (let i = 0; i < 5; i++) {
        results.push(await gql(server.url, GENERATE, { input: input(userId) }, globex.key));
      }
      expect(results.map((r) => errorCode(r) ?? "OK")).toEqual([
        "OK",
        "OK",
        "OK",
        "OK",
        "BUDGET_EXCEEDED",
      ]);
      const live = await alerts.until(() => true);
      expect(live.budgetAlerts).toMatchObject({ kind: "BUDGET_WARNING", severity: "warning" });
      expect(live.budgetAlerts.data).toMatchObject({ userId, percentUsed: 96 });
      await arrived.promise;
      expect(JSON.parse(posts[0]!)).toMatchObject({
        text: expect.stringContaining("96%"),
        alert: { kind: "BUDGET_WARNING", id: live.budgetAlerts.id },
      });
      const listed = await gql(server.url, `{ alerts(first: 10) { id kind } }`, {}, globex.key);
      expect(listed.data!.alerts).toEqual([{ id: live.budgetAlerts.id, kind: "BUDGET_WARNING" }]);
      // Once per period: more reservations past 80% raise nothing more.
      await setBudget(userId, 1, globex.key);
      await gql(server.url, GENERATE, { input: input(userId) }, globex.key);
      await setBudget(userId, 0.016, globex.key);
      await gql(server.url, GENERATE, { input: input(userId) }, globex.key);
      const again = await gql(server.url, `{ alerts(first: 10) { id } }`, {}, globex.key);
      expect(again.data!.alerts).toHaveLength(1);
      expect(alerts.messages).toHaveLength(1);
      alerts.stop();
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });

  it("an account-level limit caps all its users together", async () => {
    const initech = await partner(server, admin, "initech");
    const set = await gql(
      server.url,
      `mutation($l: Float) { setAccountBudget(monthlyLimitUsd: $l) { accountId limitUsd spentUsd reservedUsd } }`,
      { l: 2 * PRICE },
      initech.key,
    );
    expect(set.data!.setAccountBudget).toMatchObject({
      accountId: initech.accountId,
      limitUsd: 0.006,
    });
    const codes = [];
    for (const userId of ["a", "b", "c"]) {
      codes.push(
        errorCode(await gql(server.url, GENERATE, { input: input(userId) }, initech.key)) ?? "OK",
      );
    }
    expect(codes).toEqual(["OK", "OK", "BUDGET_EXCEEDED"]);
    const refused = await gql(server.url, GENERATE, { input: input("d") }, initech.key);
    expect(refused.errors![0]!.extensions).toMatchObject({ scope: "ACCOUNT", limitUsd: 0.006 });
  });

  it("new users get the default tier's limit; setBudget changes limit and tier", async () => {
    const fresh = (await gql(server.url, BUDGET, { userId: "nobody-yet" }, acme.key)).data!.budget;
    expect(fresh).toMatchObject({ tier: "PRO", limitUsd: 100, spentUsd: 0, reservedUsd: 0 });
    const res = await gql(
      server.url,
      SET_BUDGET,
      { userId: "vip", limit: 250, tier: "ENTERPRISE" },
      acme.key,
    );
    expect(res.data!.setBudget).toMatchObject({ tier: "ENTERPRISE", limitUsd: 250 });
  });

  it("the user's tier bounds the model chosen and the models it may name", async () => {
    const res = await gql(
      server.url,
      SET_BUDGET,
      { userId: "free-user", limit: 5, tier: "FREE" },
      acme.key,
    );
    expect(res.data!.setBudget.tier).toBe("FREE");
    const chosen = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { model } }`,
      { input: { ...input("free-user", { quality: 9 }), model: undefined } },
      acme.key,
    );
    expect(chosen.data!.generate.model).toBe("sim-image-fast");
    const named = await gql(
      server.url,
      GENERATE,
      { input: input("free-user", { model: "sim-image-pro" }) },
      acme.key,
    );
    expect(errorCode(named)).toBe("BAD_USER_INPUT");
    expect(JSON.stringify(named.errors)).toContain("model");
    const pro = await gql(
      server.url,
      `mutation($input: GenerateInput!) { generate(input: $input) { model } }`,
      { input: { ...input("pro-user", { quality: 9 }), model: undefined } },
      acme.key,
    );
    expect(pro.data!.generate.model).toBe("sim-image-pro");
  });

  it("refuses bad values and other accounts", async () => {
    const other = await partner(server, admin, "hooli");
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      [SET_BUDGET, { userId: "u", limit: -1 }, "BAD_USER_INPUT", "monthlyLimitUsd"],
      [SET_BUDGET, { userId: "u", limit: 1e12 }, "BAD_USER_INPUT", "monthlyLimitUsd"],
      [SET_BUDGET, { userId: "", limit: 1 }, "BAD_USER_INPUT", "userId"],
      [SET_BUDGET, { userId: "u", limit: 1, tier: "GOLD" }, "BAD_USER_INPUT", "GOLD"],
      [SET_BUDGET, { userId: "u", limit: 1, accountId: "nope" }, "BAD_USER_INPUT", "accountId"],
      [SET_BUDGET, { userId: "u", limit: 1, accountId: other.accountId }, "FORBIDDEN", ""],
      [BUDGET, { userId: "u", accountId: other.accountId }, "FORBIDDEN", ""],
      [`{ alerts(first: 0) { id } }`, {}, "BAD_USER_INPUT", "first"],
      [`mutation { setAlertWebhook(url: "ftp://example.com/x") }`, {}, "BAD_USER_INPUT", "url"],
      [
        `mutation { setAccountBudget(monthlyLimitUsd: -5) { limitUsd } }`,
        {},
        "BAD_USER_INPUT",
        "monthlyLimitUsd",
      ],
    ];
    for (const [q, vars, code, text] of cases) {
      const res = await gql(server.url, q, vars, acme.key);
      expect(errorCode(res)).toBe(code);
      expect(JSON.stringify(res.errors)).toContain(text);
    }
    // ADMIN must name the account; with it, ADMIN reads anyone's.
    expect(errorCode(await gql(server.url, BUDGET, { userId: "u" }, admin))).toBe("BAD_USER_INPUT");
    const read = await gql(
      server.url,
      BUDGET,
      { userId: "race-user", accountId: acme.accountId },
      admin,
    );
    expect(read.data!.budget.userId).toBe("race-user");
    // A partner may not subscribe to alerts of everyone.
    const ws = wsClient(server.url, acme.key);
    sockets.push(ws);
    const denied = ws.subscribe(`subscription { alertRaised { id } }`);
    expect(JSON.stringify(await denied.error())).toContain("FORBIDDEN");
    const badUser = ws.subscribe(`subscription { budgetAlerts(userId: "") { id } }`);
    expect(JSON.stringify(await badUser.error())).toContain("BAD_USER_INPUT");
    // Another account's limits and alert webhook are out of reach.
    const otherLimit = await gql(
      server.url,
      `mutation($a: ID) { setAccountBudget(monthlyLimitUsd: 1, accountId: $a) { limitUsd } }`,
      { a: other.accountId },
      acme.key,
    );
    expect(errorCode(otherLimit)).toBe("FORBIDDEN");
    const otherHook = await gql(
      server.url,
      `mutation($a: ID) { setAlertWebhook(url: null, accountId: $a) }`,
      { a: other.accountId },
      acme.key,
    );
    expect(errorCode(otherHook)).toBe("NOT_FOUND");
  });
});
