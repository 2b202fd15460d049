import { spawnGengate, type GengateProcess } from "../helpers/process";
import { expectClean, logOutcome } from "./harness/assertions";
import { Scenario, isAlive, nextLog } from "./harness/scenario";
import {
  SPAWN_TIMEOUT_MS,
  startFaultStack,
  setModelTimeout,
  type Deployment,
  type FaultStack,
} from "./harness/stack";

/**
 * Processes failing under load, one after the other on one deployment (two api processes, a
 * worker, two `gengate sim-provider` servers as its providers): a worker SIGKILLed mid-job, an
 * api process SIGKILLed while it holds subscriptions, a provider that stops answering. After
 * each, the deployment settles and the invariants are checked over every row so far. Every
 * wait is on a subscription event, a request's outcome, a log line or a process exit.
 */

const SCENARIO_TIMEOUT = 180_000;
const TOKEN = "sim-token-for-the-fault-suite";
const SECRET = "whsec_" + Buffer.from("fault suite webhook secret").toString("base64");
/** The model the load asks for (the cheapest that meets the default quality). */
const MODEL = "sim-image-standard";
/** Its provider timeout while the provider hangs: the longest an attempt may wait on it. */
const PROVIDER_TIMEOUT_SECONDS = 2;

describe("fault injection: worker, api and provider processes failing under load", () => {
  let stack: FaultStack;
  let d: Deployment;
  let primary: GengateProcess;
  let fallback: GengateProcess;
  let apis: GengateProcess[];
  let worker: GengateProcess;
  let key: string;
  const scenarios: Scenario[] = [];
  let overrides: Record<string, string>;

  beforeAll(async () => {
    stack = await startFaultStack();
    d = await stack.deployment("processes");
    [primary, fallback] = await Promise.all([simProvider(), simProvider()]);
    overrides = {
      SIM_PROVIDER_URL: `${primary.url},${fallback.url}`,
      SIM_PROVIDER_TOKEN: TOKEN,
      SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
      // Longer than the provider timeout of the hang scenario: a submission that hangs must be
      // what times out, not the reconciler's check for a submission lost with its worker.
      RECONCILE_STALE_SECONDS: "4",
      CIRCUIT_MIN_REQUESTS: "4",
    };
    const [api1, api2, w] = await Promise.all([
      d.spawn("api", overrides),
      d.spawn("api", overrides),
      d.spawn("worker", overrides),
    ]);
    apis = [api1, api2];
    worker = w;
    key = await d.partnerKey(api1.url);
  }, SCENARIO_TIMEOUT);

  afterAll(async () => {
    await Promise.all(scenarios.map((s) => s.dispose()));
    await stack?.destroy();
  }, 60_000);

  function scenario(clients = 2): Scenario {
    const s = new Scenario(d, apis, key, {}, clients);
    scenarios.push(s);
    return s.start();
  }

  function simProvider(): Promise<GengateProcess> {
    return spawnGengate(
      "sim-provider",
      {
        SIM_PROVIDER_PORT: "0",
        HOST: "127.0.0.1",
        SIM_PROVIDER_TOKEN: TOKEN,
        SIM_PROVIDER_WEBHOOK_SECRET: SECRET,
        SIM_LATENCY_MS: "400",
        SIM_LATENCY_JITTER: "0",
        SIM_PROGRESS_STEPS: "2",
        LOG_LEVEL: "warn",
      },
      { readyTimeoutMs: SPAWN_TIMEOUT_MS },
    );
  }

  it(
    "a worker SIGKILLed mid-job: another takes over and every accepted generation finishes once",
    async () => {
      const s = scenario();
      // Mid-job: generations are running at the provider when the worker dies.
      await s.load.acceptedMore(6);
      await s.watchers.untilEvent((_, e) => e.status === "PROCESSING");
      await worker.kill();
      const [atKill] = await d.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM generations WHERE status = 'PROCESSING'`,
      );
      expect(atKill!.n).toBeGreaterThan(0);

      // Load goes on while no worker runs, then a new one starts.
      await s.load.acceptedMore(3);
      worker = await d.spawn("worker", overrides);
      await s.load.acceptedMore(6);

      const out = await s.settle();
      logOutcome("worker SIGKILLed", out);
      expectClean(out);
      expect(out.report.byStatus).toEqual({ SUCCEEDED: out.report.total });
      expect([...apis, worker].every(isAlive)).toBe(true);
    },
    SCENARIO_TIMEOUT,
  );

  it(
    "an api process SIGKILLed while it holds subscriptions: its clients reconnect to the other and see every final state",
    async () => {
      const [api1, api2] = apis as [GengateProcess, GengateProcess];
      // Two sockets: client 0 on api1, client 1 on api2 while both live.
      const s = scenario(2);
      await s.load.acceptedMore(6);
      await s.watchers.whenConnected(
        () => s.watchers.connectedTo[0] === api1.url && s.watchers.connectedTo[1] === api2.url,
      );
      // api1 holds live subscriptions of generations still running.
      await s.watchers.untilEvent(
        (id, e) => s.watchers.clientOf(id) === 0 && e.status === "PROCESSING",
      );
      const heldOnApi1 = s.watchers.pending(0);
      expect(heldOnApi1.length).toBeGreaterThan(0);

      await api1.kill();
      await s.watchers.whenConnected(() => s.watchers.connectedTo[0] === api2.url);
      await s.load.acceptedMore(6);

      const out = await s.settle();
      logOutcome("api SIGKILLed", out);
      expectClean(out, { killedApi: api1.url });
      expect(out.report.byStatus).toEqual({ SUCCEEDED: out.report.total });
      for (const id of heldOnApi1) expect(out.finals.get(id)).toBe("SUCCEEDED");
      expect(s.watchers.connections[0]).toBeGreaterThanOrEqual(2);
      expect([api2, worker].every(isAlive)).toBe(true);
    },
    SCENARIO_TIMEOUT,
  );

  it(
    "a provider that accepts requests and never answers: attempts time out and fall back, and every accepted generation finishes",
    async () => {
      // A short provider timeout from now on (the catalog edit reaches every process at once).
      const reloaded = [apis[1]!, worker].map((p) =>
        nextLog(p, (j) => j.msg === "catalog reloaded after an edit", `${p.role} reloading`),
      );
      const edited = setModelTimeout(apis[1]!.url, d.adminKey, MODEL, PROVIDER_TIMEOUT_SECONDS);
      await Promise.all([edited, ...reloaded]);

      const s = scenario();
      // Jobs are running at the primary when it stops answering: their status checks hang,
      // and so do the submissions of every new one.
      await s.load.acceptedMore(4);
      await s.watchers.untilEvent((_, e) => e.status === "PROCESSING");
      const hangAt = new Date();
      await behave(primary, "hang");
      await s.load.acceptedMore(8);

      const out = await s.settle(90_000);
      logOutcome("provider hangs", out);
      expectClean(out);
      expect(out.report.byStatus).toEqual({ SUCCEEDED: out.report.total });

      // What reached the hanging provider failed with PROVIDER_TIMEOUT within the timeout
      // (with room for a status-check interval and a loaded machine), and the fallback served.
      const hung = await d.query<{ error_code: string; ms: number }>(
        `SELECT error_code, EXTRACT(EPOCH FROM (ended_at - started_at)) * 1000 AS ms
           FROM attempts WHERE provider = 'simulated' AND status = 'FAILED' AND ended_at > $1`,
        [hangAt],
      );
      expect(hung.length).toBeGreaterThan(0);
      for (const a of hung) {
        expect(a.error_code).toBe("PROVIDER_TIMEOUT");
        expect(Number(a.ms)).toBeLessThan((PROVIDER_TIMEOUT_SECONDS + 5) * 1000);
      }
      const served = await d.query<{ provider: string }>(
        `SELECT DISTINCT provider FROM attempts WHERE status = 'SUCCEEDED' AND started_at > $1`,
        [new Date(hangAt.getTime() + 1000)],
      );
      expect(served).toEqual([{ provider: "simulated-2" }]);
      expect([apis[1]!, worker, primary, fallback].every(isAlive)).toBe(true);
    },
    SCENARIO_TIMEOUT,
  );

  async function behave(sim: GengateProcess, mode: string): Promise<void> {
    const res = await fetch(`${sim.url}/admin/behaviour`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ mode }),
    });
    expect(res.status).toBe(200);
  }
});
