import { Writable } from "node:stream";
import Redis from "ioredis";
import { createLogger } from "../../src/common/logger";
import { deferred } from "../../src/common/deferred";
import { BullMqDriver } from "../../src/infra/queue/bullmq.driver";
import { InProcessQueueDriver } from "../../src/infra/queue/in-process.driver";
import type { Job, QueueConsumer, QueueDriver } from "../../src/infra/queue/queue.driver";
import { redisOptions } from "../../src/infra/redis";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "../helpers/redis";

const logger = createLogger("silent");

interface Harness {
  driver: QueueDriver;
  cleanup(): Promise<void>;
}

const drivers: Array<[string, () => Harness]> = [
  [
    "in-process",
    () => {
      const driver = new InProcessQueueDriver(logger);
      return { driver, cleanup: () => driver.close() };
    },
  ],
  [
    "BullMQ",
    () => {
      const prefix = uniquePrefix();
      const driver = new BullMqDriver({
        connection: redisOptions(TEST_REDIS_URL) as never,
        prefix,
        queueName: "generations",
        logger,
      });
      return {
        driver,
        cleanup: async () => {
          await driver.close();
          await deletePrefix(prefix);
        },
      };
    },
  ],
];

describe.each(drivers)("%s queue driver", (_name, make) => {
  let h: Harness;
  let consumer: QueueConsumer | undefined;

  beforeEach(() => {
    h = make();
  });

  afterEach(async () => {
    await consumer?.close();
    consumer = undefined;
    await h.cleanup();
  });

  /** Starts a consumer that records jobs and resolves once `n` have run. */
  function collect(n: number, concurrency = 1) {
    const seen: Job[] = [];
    const done = deferred<Job[]>();
    consumer = h.driver.consume(
      async (job) => {
        seen.push(job);
        if (seen.length === n) done.resolve(seen);
      },
      { concurrency },
    );
    return done.promise;
  }

  it("runs a job with its name and data", async () => {
    const ran = collect(1);
    await h.driver.add("submit", { generationId: "g1" }, { jobId: "g1" });
    const [job] = await ran;
    expect(job).toEqual({ id: "g1", name: "submit", data: { generationId: "g1" } });
  });

  it("ignores a job whose id is already waiting", async () => {
    await h.driver.add("submit", { generationId: "g1" }, { jobId: "same" });
    await h.driver.add("submit", { generationId: "g2" }, { jobId: "same" });
    await h.driver.add("submit", { generationId: "g3" }, { jobId: "other" });
    const jobs = await collect(2);
    expect(jobs.map((j) => j.data.generationId)).toEqual(["g1", "g3"]);
  });

  it("restores a job that is not there, and leaves one that is", async () => {
    expect(await h.driver.restore("submit", { generationId: "g1" }, { jobId: "r" })).toBe(true);
    expect(await h.driver.restore("submit", { generationId: "g2" }, { jobId: "r" })).toBe(false);
    await h.driver.add("submit", { generationId: "g3" }, { jobId: "other" });
    const jobs = await collect(2);
    expect(jobs.map((j) => j.data.generationId)).toEqual(["g1", "g3"]);
  });

  it("serves higher priority first", async () => {
    await h.driver.add("submit", { generationId: "batch" }, { jobId: "b", priority: 10 });
    await h.driver.add("submit", { generationId: "standard" }, { jobId: "s", priority: 5 });
    await h.driver.add("submit", { generationId: "interactive" }, { jobId: "i", priority: 1 });
    const jobs = await collect(3);
    expect(jobs.map((j) => j.data.generationId)).toEqual(["interactive", "standard", "batch"]);
  });

  it("holds a delayed job until its delay passes", async () => {
    const ran = collect(2);
    const added = Date.now();
    await h.driver.add(
      "poll",
      { generationId: "late", attempt: 1 },
      { jobId: "late", delayMs: 300 },
    );
    await h.driver.add("poll", { generationId: "now", attempt: 1 }, { jobId: "now" });
    expect(await h.driver.has("late")).toBe(true);
    const jobs = await ran;
    expect(jobs.map((j) => j.data.generationId)).toEqual(["now", "late"]);
    expect(Date.now() - added).toBeGreaterThanOrEqual(290);
  });

  it("removes a waiting job so it never runs", async () => {
    await h.driver.add("submit", { generationId: "gone" }, { jobId: "gone" });
    await h.driver.add("submit", { generationId: "kept" }, { jobId: "kept" });
    await h.driver.remove("gone");
    expect(await h.driver.has("gone")).toBe(false);
    const jobs = await collect(1);
    expect(jobs.map((j) => j.id)).toEqual(["kept"]);
  });

  it("lets the same id be enqueued again once the job has finished", async () => {
    let runs = 0;
    const twice = deferred();
    const once = deferred();
    consumer = h.driver.consume(
      async () => {
        runs++;
        if (runs === 1) once.resolve();
        if (runs === 2) twice.resolve();
      },
      { concurrency: 1 },
    );
    await h.driver.add("submit", { generationId: "g" }, { jobId: "again" });
    await once.promise;
    // BullMQ removes the finished job right after the handler returns; wait for that.
    while (await h.driver.has("again")) await new Promise((r) => setImmediate(r));
    await h.driver.add("submit", { generationId: "g" }, { jobId: "again" });
    await twice.promise;
    expect(runs).toBe(2);
  });

  it("waits for the active job when the consumer closes", async () => {
    const started = deferred();
    const release = deferred();
    let finished = false;
    const c = h.driver.consume(
      async () => {
        started.resolve();
        await release.promise;
        finished = true;
      },
      { concurrency: 1 },
    );
    await h.driver.add("submit", { generationId: "slow" }, { jobId: "slow" });
    await started.promise;
    const closing = c.close();
    release.resolve();
    await closing;
    expect(finished).toBe(true);
  });
});

describe("BullMQ driver after keys were lost", () => {
  it("does not count a job whose id is still queued but whose data is gone", async () => {
    const prefix = uniquePrefix();
    const driver = new BullMqDriver({
      connection: redisOptions(TEST_REDIS_URL) as never,
      prefix,
      queueName: "generations",
      logger,
    });
    const redis = new Redis(TEST_REDIS_URL);
    try {
      await driver.add("submit", { generationId: "g" }, { jobId: "orphan" });
      expect(await driver.has("orphan")).toBe(true);
      // The id stays in the waiting list; the job's hash is deleted (a partial flush).
      await redis.del(`${prefix}:generations:orphan`);
      expect(await redis.llen(`${prefix}:generations:wait`)).toBe(1);
      expect(await driver.has("orphan")).toBe(false);
      // Added again under the same id, it is there to run.
      await driver.add("submit", { generationId: "g" }, { jobId: "orphan" });
      expect(await driver.has("orphan")).toBe(true);
    } finally {
      redis.disconnect();
      await driver.close();
      await deletePrefix(prefix);
    }
  });

  it("restores a job whose hash was deleted while its id stayed queued, once a worker has left a rebuilt hash behind", async () => {
    const prefix = uniquePrefix();
    const skipped = deferred<string>();
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) {
          const entry = JSON.parse(line) as { msg: string; jobId: string };
          if (entry.msg === "job without its data skipped") skipped.resolve(entry.jobId);
        }
        cb();
      },
    });
    const driver = new BullMqDriver({
      connection: redisOptions(TEST_REDIS_URL) as never,
      prefix,
      queueName: "generations",
      logger: createLogger("warn", {}, { destination: sink }),
    });
    const redis = new Redis(TEST_REDIS_URL);
    const seen: Job[] = [];
    const ran = { next: deferred(), orphan: deferred() };
    let consumer: QueueConsumer | undefined;
    try {
      await driver.add("submit", { generationId: "g" }, { jobId: "orphan", priority: 5 });
      await redis.del(`${prefix}:generations:orphan`);
      consumer = driver.consume(
        async (job) => {
          seen.push(job);
          if (job.id === "next" || job.id === "orphan") ran[job.id].resolve();
        },
        { concurrency: 1 },
      );
      // The worker takes the id and writes its bookkeeping onto the deleted hash: a job
      // without name or data, which it skips, then keeps as completed (its options are gone).
      expect(await skipped.promise).toBe("orphan");
      // One worker slot: once the next job runs, the skipped one has been moved on.
      await driver.add("submit", { generationId: "n" }, { jobId: "next" });
      await ran.next.promise;
      expect(await redis.exists(`${prefix}:generations:orphan`)).toBe(1);
      expect(await driver.has("orphan")).toBe(false);

      // What is left under the id makes a plain add a no-op; restore clears it first.
      await driver.add("submit", { generationId: "g" }, { jobId: "orphan" });
      expect(await driver.has("orphan")).toBe(false);
      expect(await driver.restore("submit", { generationId: "g" }, { jobId: "orphan" })).toBe(true);
      await ran.orphan.promise;
      expect(seen.map((j) => [j.id, j.data.generationId])).toEqual([
        ["next", "n"],
        ["orphan", "g"],
      ]);
    } finally {
      await consumer?.close();
      redis.disconnect();
      await driver.close();
      await deletePrefix(prefix);
    }
  });
});
