import { gql, wsClient, type WsClient } from "../helpers/graphql";
import {
  assertBuilt,
  stopAllGengates,
  succeededLog,
  type GengateProcess,
  type GengateRole,
} from "../helpers/process";
import {
  createProcessTestEnv,
  expectSucceededOnce,
  type ProcessTestEnv,
} from "../helpers/process-env";

/**
 * The deployment the README's "Scaling out" section describes: two api and two worker processes
 * (the built program) sharing one Postgres and one Redis, load spread over both apis, and a
 * subscriber on each api watching every generation, wherever it was created and run.
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH_ALL = `subscription { generationsUpdated { type generation { id status } } }`;
const USAGE = `query($from: DateTime!, $to: DateTime!) {
  usage(from: $from, to: $to, groupBy: [USER]) { generations totalCostUsd rows { userId generations } }
}`;

type Update = { generationsUpdated: { type: string; generation: { id: string; status: string } } };

const GENERATIONS = 48;
const USERS = 6;
const TIMEOUT = 90_000;

describe("scale-out: two api and two worker processes on one Postgres and one Redis", () => {
  let env: ProcessTestEnv;
  const sockets: WsClient[] = [];

  beforeAll(() => {
    assertBuilt();
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose().catch(() => undefined)));
    await stopAllGengates();
    await env?.cleanup();
  });

  it(
    "spreads the load over both workers, streams every result to a subscriber on each api and charges each generation once",
    async () => {
      env = await createProcessTestEnv();
      const spawn = (role: GengateRole) => env.spawn(role, { WORKER_CONCURRENCY: "4" });
      const apis = await Promise.all([spawn("api"), spawn("api")]);
      const workers = await Promise.all([spawn("worker"), spawn("worker")]);
      const key = await env.partnerKey(apis[0]!, "scale-out");

      // One account-wide subscriber per api, live before the first generation is created.
      const subs = apis.map((api) => {
        const socket = wsClient(api.url, key);
        sockets.push(socket);
        return socket.subscribe<Update>(WATCH_ALL);
      });
      // The subscription is live once the server has acknowledged it: a throwaway generation
      // seen by both proves it.
      const probe = await gql(
        apis[1]!.url,
        GENERATE,
        { input: { userId: "probe", mediaType: "IMAGE", prompt: "probe", cache: "BYPASS" } },
        key,
      );
      const probeId = probe.data!.generate.id as string;
      await Promise.all(
        subs.map((s) =>
          s.until(
            (m) =>
              m.generationsUpdated.generation.id === probeId &&
              m.generationsUpdated.generation.status === "SUCCEEDED",
          ),
        ),
      );

      // The load: alternating apis, several end users, each generation held by the provider a
      // little while so both workers have jobs at once.
      const ids = await Promise.all(
        Array.from({ length: GENERATIONS }, async (_, i) => {
          const res = await gql(
            apis[i % 2]!.url,
            GENERATE,
            {
              input: {
                userId: `user-${i % USERS}`,
                mediaType: "IMAGE",
                prompt: `scale-out #${i} [sim:latency=300]`,
                cache: "BYPASS",
              },
            },
            key,
          );
          if (!res.data) throw new Error(`generate failed: ${JSON.stringify(res.errors)}`);
          return res.data.generate.id as string;
        }),
      );
      const all = [probeId, ...ids];

      // Every generation reaches SUCCEEDED exactly once on both subscribers.
      for (const sub of subs) {
        await sub.until((_m, received) =>
          all.every((id) =>
            received.some(
              (x) =>
                x.generationsUpdated.generation.id === id &&
                x.generationsUpdated.generation.status === "SUCCEEDED",
            ),
          ),
        );
        const succeeded = sub.messages
          .filter((m) => m.generationsUpdated.type === "SUCCEEDED")
          .map((m) => m.generationsUpdated.generation.id);
        expect(succeeded.sort()).toEqual([...all].sort());
      }

      // Both workers ran generations; neither api ran any. A worker logs a success after it
      // has published it, so wait for each line rather than read the logs at once.
      await Promise.all(
        all.map((id) =>
          Promise.any(
            workers.map((w) =>
              w.waitForLog(succeededLog(id), { timeoutMs: 30_000, what: `the success of ${id}` }),
            ),
          ),
        ),
      );
      const ran = (p: GengateProcess) =>
        p.logs.filter(succeededLog()).map((l) => l.json!.generationId);
      const [byFirst, bySecond] = workers.map(ran);
      expect(byFirst!.length).toBeGreaterThan(0);
      expect(bySecond!.length).toBeGreaterThan(0);
      expect(new Set([...byFirst!, ...bySecond!])).toEqual(new Set(all));
      expect(byFirst!.length + bySecond!.length).toBe(all.length);
      expect(apis.flatMap(ran)).toEqual([]);

      // One succeeded attempt and one usage row per generation; every budget settled.
      await expectSucceededOnce(env, all);
      const ledgers = await env.query<{
        who: string;
        spent: string;
        reserved: string;
        used: string;
      }>(
        `SELECT e.user_id AS who, b.spent_usd AS spent, b.reserved_usd AS reserved,
                (SELECT COALESCE(sum(u.cost_usd), 0) FROM usage_records u
                  WHERE u.end_user_id = b.end_user_id) AS used
           FROM budget_periods b JOIN end_users e ON e.id = b.end_user_id`,
      );
      expect(ledgers).toHaveLength(USERS + 1);
      for (const l of ledgers) {
        expect(Number(l.reserved)).toBe(0);
        expect(Number(l.spent)).toBeCloseTo(Number(l.used), 6);
      }

      // Either api reports the same usage.
      const range = { from: new Date(Date.now() - 3_600_000), to: new Date(Date.now() + 60_000) };
      const reports = await Promise.all(apis.map((api) => gql(api.url, USAGE, range, key)));
      const [first, second] = reports.map((r) => {
        if (!r.data) throw new Error(`usage failed: ${JSON.stringify(r.errors)}`);
        return r.data.usage;
      });
      expect(first.generations).toBe(all.length);
      expect(second).toEqual(first);
      expect(first.rows).toHaveLength(USERS + 1);

      await Promise.all([...apis, ...workers].map((p) => p.stop()));
    },
    TIMEOUT,
  );
});
