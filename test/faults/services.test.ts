import type { GengateProcess } from "../helpers/process";
import { expectClean, logOutcome } from "./harness/assertions";
import { Scenario, isAlive, nextLog } from "./harness/scenario";
import { startFaultStack, type Deployment, type FaultStack } from "./harness/stack";

/**
 * The backing services failing under load, one after the other on one deployment (an api and
 * a worker process): Redis restarted empty (queue, caches, breaker state and pub/sub all
 * lost), then Postgres crashed and restarted. The processes stay up throughout and must
 * recover on their own; after each fault the deployment settles and the invariants are
 * checked over every row so far.
 */

const SCENARIO_TIMEOUT = 180_000;

describe("fault injection: Redis and Postgres restarted under load", () => {
  let stack: FaultStack;
  let d: Deployment;
  let api: GengateProcess;
  let worker: GengateProcess;
  let key: string;
  const scenarios: Scenario[] = [];

  beforeAll(async () => {
    stack = await startFaultStack();
    d = await stack.deployment("services");
    [api, worker] = await Promise.all([d.spawn("api"), d.spawn("worker")]);
    key = await d.partnerKey(api.url);
  }, SCENARIO_TIMEOUT);

  afterAll(async () => {
    await Promise.all(scenarios.map((s) => s.dispose()));
    await stack?.destroy();
  }, 60_000);

  function scenario(): Scenario {
    const s = new Scenario(d, [api], key);
    scenarios.push(s);
    return s.start();
  }

  it(
    "Redis restarted and flushed: every accepted generation still finishes, once, and its subscribers see it",
    async () => {
      const s = scenario();

      await s.load.acceptedMore(6);
      await s.watchers.untilEvent((_, e) => e.status === "PROCESSING");
      const requeued = nextLog(
        worker,
        (j) => j.msg === "reconciler re-enqueued generations",
        "the reconciler re-enqueueing what Redis lost",
      );
      // Down until both processes have noticed: what finishes meanwhile cannot be published.
      const lost = Promise.all(
        [api, worker].map((p) =>
          nextLog(p, (j) => j.msg === "redis connection error", `${p.role} losing Redis`),
        ),
      );
      await stack.redis.restart({ flush: true, whileDown: () => lost });
      await s.load.acceptedMore(6);
      await requeued;

      const out = await s.settle();
      logOutcome("redis restarted and flushed", out);
      expectClean(out);
      expect(out.report.byStatus).toEqual({ SUCCEEDED: out.report.total });
      expect([api, worker].every(isAlive)).toBe(true);
    },
    SCENARIO_TIMEOUT,
  );

  it(
    "Postgres crashed and restarted: the processes live on, requests meanwhile are refused with a code, and everything accepted finishes",
    async () => {
      const s = scenario();

      await s.load.acceptedMore(6);
      await s.watchers.untilEvent((_, e) => e.status === "PROCESSING");
      // A crash; the outage lasts until requests have met it.
      await stack.pg.restart("immediate", async () => {
        await s.load.nextOutcome((o) => o.kind !== "accepted");
        await s.load.nextOutcome((o) => o.kind !== "accepted");
      });
      await s.load.acceptedMore(6);

      const out = await s.settle();
      logOutcome("postgres crashed and restarted", out);
      expectClean(out);
      expect(out.report.byStatus).toEqual({ SUCCEEDED: out.report.total });
      expect(out.load["refused:SERVICE_UNAVAILABLE"]).toBeGreaterThan(0);
      expect([api, worker].every(isAlive)).toBe(true);
    },
    SCENARIO_TIMEOUT,
  );
});
