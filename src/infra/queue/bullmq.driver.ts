import { Queue, Worker, type ConnectionOptions } from "bullmq";
import { PRIORITY_RANK } from "./queue.driver";
import type { Logger } from "../../common/logger";
import type {
  ConsumeOptions,
  EnqueueOptions,
  JobData,
  JobHandler,
  JobName,
  QueueConsumer,
  QueueCounts,
  QueueDriver,
} from "./queue.driver";

export interface BullMqDriverOptions {
  connection: ConnectionOptions;
  prefix: string;
  queueName: string;
  logger: Logger;
}

export class BullMqDriver implements QueueDriver {
  private readonly queue: Queue<JobData, void, JobName>;

  constructor(private readonly opts: BullMqDriverOptions) {
    this.queue = new Queue(opts.queueName, {
      connection: opts.connection,
      prefix: opts.prefix,
      defaultJobOptions: {
        // Finished jobs are removed so that the same id can be enqueued again by the reconciler.
        removeOnComplete: true,
        removeOnFail: true,
        attempts: 1,
      },
    });
    this.queue.on("error", (err) => opts.logger.error({ err }, "queue connection error"));
  }

  async add(name: JobName, data: JobData, opts: EnqueueOptions): Promise<void> {
    await this.queue.add(name, data, {
      jobId: opts.jobId,
      delay: opts.delayMs,
      priority: opts.priority,
    });
  }

  /**
   * BullMQ takes any hash under the id for the job itself and skips the add. Keys deleted
   * part-way leave such hashes behind: the job's own, out of every list, or a few fields that
   * a script wrote onto the deleted hash (moveToActive, then moveToFinished, which keeps it as
   * completed since its options are gone). So what is there is removed first.
   */
  async restore(name: JobName, data: JobData, opts: EnqueueOptions): Promise<boolean> {
    if (await this.has(opts.jobId)) return false;
    // 0 when a lock is still held on the id: that runs out within the lock duration.
    if ((await this.queue.remove(opts.jobId)) !== 1) return false;
    await this.add(name, data, opts);
    return true;
  }

  /**
   * Whether the job is still there to run. Its id in a waiting, delayed or active set is not
   * enough: keys deleted part-way (a flush, an eviction, a failover losing writes) can leave
   * the id without the job's hash, which no worker can ever run ("Missing key for job"), or
   * with a hash rebuilt from a few fields, without the job's name and data.
   */
  async has(jobId: string): Promise<boolean> {
    const [job, state] = await Promise.all([
      this.queue.getJob(jobId),
      this.queue.getJobState(jobId),
    ]);
    if (!job?.name) return false;
    return ["waiting", "delayed", "active", "prioritized", "waiting-children"].includes(state);
  }

  async remove(jobId: string): Promise<void> {
    const job = await this.queue.getJob(jobId);
    if (!job) return;
    try {
      await job.remove();
    } catch {
      // An active job is locked by its worker; it will see the generation is finished.
    }
  }

  async counts(): Promise<QueueCounts> {
    const ranks = Object.values(PRIORITY_RANK);
    const [c, perPriority] = await Promise.all([
      this.queue.getJobCounts("waiting", "prioritized", "active", "delayed"),
      this.queue.getCountsPerPriority(ranks),
    ]);
    const byPriority: Record<number, number> = {};
    for (const r of ranks) byPriority[r] = perPriority[String(r)] ?? 0;
    return {
      // BullMQ keeps prioritized jobs apart from the plain waiting list: both are ready to run.
      waiting: (c.waiting ?? 0) + (c.prioritized ?? 0),
      active: c.active ?? 0,
      delayed: c.delayed ?? 0,
      byPriority,
    };
  }

  consume(handler: JobHandler, opts: ConsumeOptions): QueueConsumer {
    const worker = new Worker<JobData, void, JobName>(
      this.opts.queueName,
      async (job) => {
        if (!job.name) {
          // Rebuilt from a few fields after its hash was deleted (see `has`): nothing to run.
          this.opts.logger.warn({ jobId: job.id }, "job without its data skipped");
          return;
        }
        return handler({ id: job.id ?? "", name: job.name, data: job.data });
      },
      {
        connection: this.opts.connection,
        prefix: this.opts.prefix,
        concurrency: opts.concurrency,
        ...(opts.lockMs ? { lockDuration: opts.lockMs, stalledInterval: opts.lockMs } : {}),
      },
    );
    worker.on("failed", (job, err) =>
      this.opts.logger.error({ err, jobId: job?.id, job: job?.name }, "job failed"),
    );
    worker.on("error", (err) => this.opts.logger.error({ err }, "worker connection error"));
    return { close: () => worker.close() };
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
