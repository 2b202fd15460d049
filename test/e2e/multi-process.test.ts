import { gql, wsClient, type SubscriptionRecorder, type WsClient } from "../helpers/graphql";
import {
  assertBuilt,
  stopAllGengates,
  succeededLog,
  type GengateProcess,
} from "../helpers/process";
import {
  createProcessTestEnv,
  expectSucceededOnce,
  type ProcessTestEnv,
} from "../helpers/process-env";
import { deletePrefix } from "../helpers/redis";

/**
 * gengate as it is deployed: the built program in separate api and worker processes that share
 * only Postgres and Redis. Every wait is on a log line, a subscription event or a process exit.
 */

const GENERATE = `mutation($input: GenerateInput!) { generate(input: $input) { id status } }`;
const WATCH = `subscription($id: ID!) {
  generationUpdated(id: $id) {
    type
    generation { id status progress attempts { number status } outputs { url contentType } }
  }
}`;

type Event = {
  generationUpdated: {
    type: string;
    generation: {
      id: string;
      status: string;
      progress: number;
      attempts: Array<{ number: number; status: string }>;
      outputs: Array<{ url: string; contentType: string }>;
    };
  };
};

const E2E_TIMEOUT = 60_000;
/** RECONCILE_STALE_SECONDS in the children's environment (test/helpers/test-app.ts). */
const STALE_SECONDS = 2;

describe("gengate as separate processes on Postgres and Redis", () => {
  const envs: ProcessTestEnv[] = [];
  const sockets: WsClient[] = [];

  beforeAll(() => {
    assertBuilt();
  });

  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.dispose().catch(() => undefined)));
    await stopAllGengates();
    for (const env of envs) await env.cleanup();
  });

  async function newEnv(): Promise<ProcessTestEnv> {
    const env = await createProcessTestEnv();
    envs.push(env);
    return env;
  }

  function socket(url: string, key: string): WsClient {
    const s = wsClient(url, key);
    sockets.push(s);
    return s;
  }

  async function generate(
    url: string,
    key: string,
    prompt: string,
    size = { width: 64, height: 64 },
  ): Promise<string> {
    const res = await gql(
      url,
      GENERATE,
      {
        input: {
          userId: "e2e-user",
          mediaType: "IMAGE",
          prompt,
          ...size,
          // Each job must really run: no cache may answer for it.
          cache: "BYPASS",
        },
      },
      key,
    );
    if (!res.data) throw new Error(`generate failed: ${JSON.stringify(res.errors)}`);
    expect(res.data.generate.status).toBe("QUEUED");
    return res.data.generate.id as string;
  }

  /** The first event matching `pred`; fails with what arrived if the stream ends first. */
  async function untilEvent(
    sub: SubscriptionRecorder<Event>,
    pred: (e: Event["generationUpdated"]) => boolean,
    what: string,
  ): Promise<Event["generationUpdated"]> {
    const ended = sub.completed.promise.then(() => {
      throw new Error(
        `subscription ended before ${what}; received ${JSON.stringify(
          sub.messages.map((m) => [
            m.generationUpdated.type,
            m.generationUpdated.generation.status,
          ]),
        )}, errors ${JSON.stringify(sub.errors)}`,
      );
    });
    const found = await Promise.race([sub.until((m) => pred(m.generationUpdated)), ended]);
    return found.generationUpdated;
  }

  const succeeded = (sub: SubscriptionRecorder<Event>) =>
    untilEvent(sub, (e) => e.generation.status === "SUCCEEDED", "SUCCEEDED");

  /** Resolves once any of the generations is reported PROCESSING. */
  function anyProcessing(subs: Array<SubscriptionRecorder<Event>>): Promise<unknown> {
    return Promise.any(
      subs.map((s) => untilEvent(s, (e) => e.generation.status === "PROCESSING", "PROCESSING")),
    );
  }

  async function statuses(env: ProcessTestEnv, ids: string[]): Promise<Record<string, string>> {
    const rows = await env.query<{ id: string; status: string }>(
      `SELECT id, status FROM generations WHERE id = ANY($1)`,
      [ids],
    );
    return Object.fromEntries(rows.map((r) => [r.id, r.status]));
  }

  it(
    "a subscriber on one api process receives the progress and result of a generation created on another api process and run by a separate worker",
    async () => {
      const env = await newEnv();
      const [api1, api2] = await Promise.all([env.spawn("api"), env.spawn("api")]);
      expect(api1.port).not.toBe(api2.port);
      const key = await env.partnerKey(api1);

      const id = await generate(api1.url, key, "three processes [sim:latency=900]");
      const sub = socket(api2.url, key).subscribe<Event>(WATCH, { id });
      // The first message is the current state: from then on the subscription is live, so
      // starting the worker only now guarantees every later event has a listener.
      const first = await untilEvent(sub, () => true, "the current state");
      expect(first).toMatchObject({ type: "QUEUED", generation: { status: "QUEUED" } });

      const worker = await env.spawn("worker");
      const done = await succeeded(sub);
      await sub.completed.promise;

      const types = sub.messages.map((m) => m.generationUpdated.type);
      expect(types[0]).toBe("QUEUED");
      expect(types).toContain("STARTED");
      expect(types).toContain("PROGRESS");
      expect(types[types.length - 1]).toBe("SUCCEEDED");
      expect(types.filter((t) => t === "SUCCEEDED")).toHaveLength(1);
      const progress = sub.messages.map((m) => m.generationUpdated.generation.progress);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(done.generation.attempts).toEqual([{ number: 1, status: "SUCCEEDED" }]);

      // The worker process did the work; neither api process runs jobs.
      const ranIt = (p: GengateProcess) => p.logs.some(succeededLog(id));
      expect([ranIt(api1), ranIt(api2), ranIt(worker)]).toEqual([false, false, true]);

      // The output the worker stored is served by the api that streamed it.
      expect(done.generation.outputs).toHaveLength(1);
      const output = await fetch(done.generation.outputs[0]!.url);
      expect(output.status).toBe(200);
      const bytes = Buffer.from(await output.arrayBuffer());
      expect(bytes.subarray(1, 4).toString()).toBe("PNG");

      await expectSucceededOnce(env, [id]);
      await Promise.all([api1.stop(), api2.stop(), worker.stop()]);
    },
    E2E_TIMEOUT,
  );

  it(
    "every generation succeeds exactly once when its worker is SIGKILLed mid-job and a new worker takes over",
    async () => {
      const env = await newEnv();
      const [api, worker] = await Promise.all([env.spawn("api"), env.spawn("worker")]);
      const key = await env.partnerKey(api);

      const ids = await Promise.all(
        [1, 2, 3, 4].map((i) => generate(api.url, key, `worker killed #${i} [sim:latency=1500]`)),
      );
      const ws = socket(api.url, key);
      const subs = ids.map((id) => ws.subscribe<Event>(WATCH, { id }));
      await anyProcessing(subs);

      await worker.kill();
      // Nothing else moves a generation on while no worker runs: this is the state it died in.
      const atKill = Object.values(await statuses(env, ids));
      expect(atKill).toContain("PROCESSING");
      expect(atKill).not.toContain("SUCCEEDED");

      const next = await env.spawn("worker");
      const done = await Promise.all(subs.map(succeeded));
      expect(done.map((e) => e.generation.status)).toEqual(ids.map(() => "SUCCEEDED"));
      for (const sub of subs) {
        const finals = sub.messages.filter((m) => m.generationUpdated.type === "SUCCEEDED");
        expect(finals).toHaveLength(1);
      }
      await expectSucceededOnce(env, ids);

      await Promise.all([api.stop(), next.stop()]);
    },
    E2E_TIMEOUT,
  );

  it(
    "every queued and processing generation still succeeds, charged once, after the deployment's Redis keys are deleted mid-run",
    async () => {
      const env = await newEnv();
      const api = await env.spawn("api");
      const key = await env.partnerKey(api);

      // Created before any worker runs: all QUEUED, their submit jobs waiting in Redis.
      const ids = await Promise.all(
        [1, 2, 3, 4, 5, 6, 7, 8].map((i) =>
          generate(api.url, key, `redis flushed #${i} [sim:latency=800]`),
        ),
      );
      const ws = socket(api.url, key);
      const subs = ids.map((id) => ws.subscribe<Event>(WATCH, { id }));
      await Promise.all(subs.map((s) => untilEvent(s, () => true, "the current state")));

      const worker = await env.spawn("worker", { WORKER_CONCURRENCY: "1" });
      await anyProcessing(subs);
      const before = Object.values(await statuses(env, ids));
      const deleted = await deletePrefix(env.redisPrefix);
      expect(deleted).toBeGreaterThan(0);
      expect(before).toContain("PROCESSING");
      expect(before).toContain("QUEUED");
      expect(before).not.toContain("SUCCEEDED");

      const done = await Promise.all(subs.map(succeeded));
      expect(done.map((e) => e.generation.status)).toEqual(ids.map(() => "SUCCEEDED"));
      await expectSucceededOnce(env, ids);
      // Recovery came from the rows, through the reconciler.
      expect(worker.logs.some((l) => l.json?.msg === "reconciler re-enqueued generations")).toBe(
        true,
      );

      // The worker lived through it and still shuts down cleanly.
      expect(await worker.stop()).toBe(0);
      await api.stop();
    },
    E2E_TIMEOUT,
  );

  it(
    "a worker taking over after an outage finishes each running generation with its first provider attempt",
    async () => {
      const env = await newEnv();
      // Polls follow the provider's hint (the next progress step), not a short fixed cap, so
      // two poll chains of one attempt wake up at the same instants.
      const workerEnv = { SIM_PROGRESS_STEPS: "10", POLL_MAX_MS: "900" };
      const [api, worker] = await Promise.all([env.spawn("api"), env.spawn("worker", workerEnv)]);
      const key = await env.partnerKey(api);

      const ids = await Promise.all(
        [1, 2, 3, 4, 5, 6, 7, 8].map((i) =>
          generate(api.url, key, `taken over #${i} [sim:latency=8000]`, {
            width: 512,
            height: 512,
          }),
        ),
      );
      const ws = socket(api.url, key);
      const subs = ids.map((id) => ws.subscribe<Event>(WATCH, { id }));
      // A PROGRESS event means the provider job id is recorded and its poll chain is running.
      await Promise.all(subs.map((s) => untilEvent(s, (e) => e.type === "PROGRESS", "PROGRESS")));
      await worker.kill();

      // No event marks the passing of time: wait in the database until the reconciler will
      // find every generation stale.
      await until(
        async () =>
          (
            await env.query<{ stale: boolean }>(
              `SELECT bool_and(updated_at < now() - make_interval(secs => $2)) AS stale
                 FROM generations WHERE id = ANY($1)`,
              [ids, STALE_SECONDS + 0.2],
            )
          )[0]!.stale,
        "every generation to be stale",
      );

      // The polls the dead worker left delayed in Redis and the reconciler's new ones both
      // drive the same attempts now: the provider job must still be finished only once.
      const next = await env.spawn("worker", workerEnv);
      await Promise.all(subs.map(succeeded));
      await expectSucceededOnce(env, ids);
      const attempts = await env.query<{ generation_id: string; number: number; status: string }>(
        `SELECT generation_id, number, status, error_code FROM attempts
          WHERE generation_id = ANY($1) ORDER BY generation_id, number`,
        [ids],
      );
      // Each provider job succeeded: nothing justifies paying for a second attempt.
      expect(attempts.filter((a) => a.number !== 1 || a.status !== "SUCCEEDED")).toEqual([]);
      expect(next.logs.filter((l) => l.json?.msg === "attempt failed").map((l) => l.raw)).toEqual(
        [],
      );
      await Promise.all([api.stop(), next.stop()]);
    },
    E2E_TIMEOUT,
  );

  describe("graceful shutdown of an `all` process", () => {
    let env: ProcessTestEnv;
    let key: string;
    let ids: string[];

    it(
      "on SIGTERM closes its open subscriptions' WebSocket and exits with code 0",
      async () => {
        env = await newEnv();
        const all = await env.spawn("all");
        key = await env.partnerKey(all);
        ids = await Promise.all(
          [1, 2, 3].map((i) => generate(all.url, key, `graceful #${i} [sim:latency=1500]`)),
        );
        const ws = socket(all.url, key);
        const subs = ids.map((id) => ws.subscribe<Event>(WATCH, { id }));
        await anyProcessing(subs);

        const exitCode = await all.stop();
        const closeCode = await ws.closed;
        await Promise.all(subs.map((s) => s.completed.promise));

        expect(closeCode).toBe(1001);
        expect(all.logs.some((l) => l.json?.msg === "shutting down")).toBe(true);
        expect(exitCode).toBe(0);
        expect(all.logs.some((l) => l.json?.msg === "stopped")).toBe(true);
      },
      E2E_TIMEOUT,
    );

    it(
      "a later process finishes the generations the stopped one left unfinished",
      async () => {
        expect(ids).toHaveLength(3);
        const left = Object.values(await statuses(env, ids));
        expect(left.some((s) => s !== "SUCCEEDED")).toBe(true);

        const later = await env.spawn("all");
        const ws = socket(later.url, key);
        const subs = ids.map((id) => ws.subscribe<Event>(WATCH, { id }));
        const done = await Promise.all(subs.map(succeeded));
        expect(done.map((e) => e.generation.status)).toEqual(ids.map(() => "SUCCEEDED"));
        await expectSucceededOnce(env, ids);
        await later.stop();
      },
      E2E_TIMEOUT,
    );
  });
});

/** Polls `check` every 100 ms until it holds; only where no event exists to wait on. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
