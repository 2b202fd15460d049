import type { Logger } from "../../common/logger";
import type {
  ConsumeOptions,
  EnqueueOptions,
  Job,
  JobData,
  JobHandler,
  JobName,
  QueueConsumer,
  QueueCounts,
  QueueDriver,
} from "./queue.driver";

interface Entry {
  job: Job;
  priority: number;
  /** Whether the step was given a priority (BullMQ's per-priority counts see only those). */
  ranked: boolean;
  seq: number;
}

/**
 * The embedded default: a priority queue in this process, with timers for delayed jobs.
 * Same contract as BullMQ's driver, without surviving a restart (the reconciler covers that).
 */
export class InProcessQueueDriver implements QueueDriver {
  private readonly waiting: Entry[] = [];
  private readonly delayed = new Map<string, { entry: Entry; timer: NodeJS.Timeout }>();
  private readonly active = new Set<string>();
  private readonly consumers = new Set<InProcessConsumer>();
  private seq = 0;

  constructor(private readonly logger: Logger) {}

  async add(name: JobName, data: JobData, opts: EnqueueOptions): Promise<void> {
    if (this.hasSync(opts.jobId)) return;
    const entry: Entry = {
      job: { id: opts.jobId, name, data },
      priority: opts.priority ?? 5,
      ranked: opts.priority !== undefined,
      seq: this.seq++,
    };
    if (opts.delayMs && opts.delayMs > 0) {
      const timer = setTimeout(() => {
        this.delayed.delete(opts.jobId);
        this.push(entry);
      }, opts.delayMs);
      this.delayed.set(opts.jobId, { entry, timer });
      return;
    }
    this.push(entry);
  }

  async restore(name: JobName, data: JobData, opts: EnqueueOptions): Promise<boolean> {
    if (this.hasSync(opts.jobId)) return false;
    await this.add(name, data, opts);
    return true;
  }

  async has(jobId: string): Promise<boolean> {
    return this.hasSync(jobId);
  }

  async remove(jobId: string): Promise<void> {
    const d = this.delayed.get(jobId);
    if (d) {
      clearTimeout(d.timer);
      this.delayed.delete(jobId);
    }
    const i = this.waiting.findIndex((e) => e.job.id === jobId);
    if (i >= 0) this.waiting.splice(i, 1);
  }

  consume(handler: JobHandler, opts: ConsumeOptions): QueueConsumer {
    const consumer = new InProcessConsumer(this, handler, opts.concurrency, this.logger);
    this.consumers.add(consumer);
    consumer.pump();
    return {
      close: async () => {
        this.consumers.delete(consumer);
        await consumer.close();
      },
    };
  }

  async counts(): Promise<QueueCounts> {
    const byPriority: Record<number, number> = {};
    for (const e of this.waiting)
      if (e.ranked) byPriority[e.priority] = (byPriority[e.priority] ?? 0) + 1;
    return {
      waiting: this.waiting.length,
      active: this.active.size,
      delayed: this.delayed.size,
      byPriority,
    };
  }

  async close(): Promise<void> {
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.waiting.length = 0;
  }

  /** @internal used by consumers */
  take(): Job | undefined {
    const entry = this.waiting.shift();
    if (entry) this.active.add(entry.job.id);
    return entry?.job;
  }

  /** @internal used by consumers */
  done(jobId: string): void {
    this.active.delete(jobId);
  }

  private hasSync(jobId: string): boolean {
    return (
      this.active.has(jobId) ||
      this.delayed.has(jobId) ||
      this.waiting.some((e) => e.job.id === jobId)
    );
  }

  private push(entry: Entry): void {
    // Stable priority order: lower priority value first, then first in.
    let i = this.waiting.length;
    while (i > 0) {
      const prev = this.waiting[i - 1]!;
      if (
        prev.priority < entry.priority ||
        (prev.priority === entry.priority && prev.seq < entry.seq)
      )
        break;
      i--;
    }
    this.waiting.splice(i, 0, entry);
    for (const c of this.consumers) c.pump();
  }
}

class InProcessConsumer {
  private running = 0;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly driver: InProcessQueueDriver,
    private readonly handler: JobHandler,
    private readonly concurrency: number,
    private readonly logger: Logger,
  ) {}

  pump(): void {
    while (!this.closed && this.running < this.concurrency) {
      const job = this.driver.take();
      if (!job) return;
      this.running++;
      const run = this.handler(job)
        .catch((err: unknown) =>
          this.logger.error({ err, jobId: job.id, job: job.name }, "job failed"),
        )
        .finally(() => {
          this.running--;
          this.driver.done(job.id);
          this.inFlight.delete(run);
          // Deferred so a handler that enqueues its own follow-up does not recurse.
          setImmediate(() => this.pump());
        });
      this.inFlight.add(run);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.inFlight]);
  }
}
