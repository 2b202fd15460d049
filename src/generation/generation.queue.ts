import { randomBytes } from "node:crypto";
import type { Priority } from "../entities";
import { PRIORITY_RANK, type QueueDriver } from "../infra/queue/queue.driver";

/**
 * Job naming for the lifecycle, in one place. The first submit's job id is the generation id,
 * so enqueueing it twice is harmless; later steps get ids of their own.
 */
export class GenerationQueue {
  constructor(private readonly driver: QueueDriver) {}

  submit(generationId: string, priority: Priority): Promise<void> {
    return this.driver.add(
      "submit",
      { generationId },
      { jobId: generationId, priority: PRIORITY_RANK[priority] },
    );
  }

  /** The next attempt after a retryable failure, after a backoff. */
  retry(generationId: string, attempt: number, priority: Priority, delayMs: number): Promise<void> {
    return this.driver.add(
      "submit",
      { generationId },
      { jobId: `${generationId}-a${attempt}`, priority: PRIORITY_RANK[priority], delayMs },
    );
  }

  /** Starts the next attempt of a generation whose retry job was lost. */
  resubmit(generationId: string, priority: Priority, delayMs = 0): Promise<void> {
    return this.driver.add(
      "submit",
      { generationId },
      {
        jobId: `${generationId}-r${randomBytes(6).toString("base64url")}`,
        priority: PRIORITY_RANK[priority],
        delayMs,
      },
    );
  }

  /** A fresh id for the next status check; recorded on the attempt before it is enqueued. */
  pollJobId(generationId: string, attempt: number): string {
    return `${generationId}-p${attempt}-${randomBytes(6).toString("base64url")}`;
  }

  poll(generationId: string, attempt: number, delayMs: number, jobId: string): Promise<void> {
    return this.driver.add("poll", { generationId, attempt }, { jobId, delayMs });
  }

  /** One status check now, scheduling no next one: a webhook's nudge. */
  pollOnce(generationId: string, attempt: number): Promise<void> {
    return this.driver.add(
      "poll",
      { generationId, attempt, once: true },
      { jobId: `${generationId}-w${attempt}-${randomBytes(6).toString("base64url")}` },
    );
  }

  /**
   * A collector pass after `delayMs`. The key makes repeated wake-ups for the same cause (one
   * new BATCHED row, one group's deadline) a single job.
   */
  collectBatches(key: string, delayMs = 0): Promise<void> {
    return this.driver.add(
      "batch-collect",
      { generationId: "" },
      { jobId: `collect-${key}`, delayMs, priority: PRIORITY_RANK.BATCH },
    );
  }

  /** Sends a collected batch to its provider; the first job's id is derived from the batch. */
  submitBatch(batchId: string, delayMs = 0, retry = false): Promise<void> {
    return this.driver.add(
      "batch-submit",
      { generationId: "", batchId },
      {
        jobId: retry
          ? `batch-${batchId}-s${randomBytes(6).toString("base64url")}`
          : `batch-${batchId}-s`,
        delayMs,
      },
    );
  }

  hasBatchSubmit(batchId: string): Promise<boolean> {
    return this.driver.has(`batch-${batchId}-s`);
  }

  /** A fresh id for the batch's next status check; recorded on the batch before it is enqueued. */
  batchPollJobId(batchId: string): string {
    return `batch-${batchId}-p${randomBytes(6).toString("base64url")}`;
  }

  pollBatch(batchId: string, delayMs: number, jobId: string): Promise<void> {
    return this.driver.add("batch-poll", { generationId: "", batchId }, { jobId, delayMs });
  }

  has(jobId: string): Promise<boolean> {
    return this.driver.has(jobId);
  }

  /** The first submit again, for a queued generation; false when its job is still there. */
  restoreSubmit(generationId: string, priority: Priority): Promise<boolean> {
    return this.driver.restore(
      "submit",
      { generationId },
      { jobId: generationId, priority: PRIORITY_RANK[priority] },
    );
  }

  removeSubmit(generationId: string): Promise<void> {
    return this.driver.remove(generationId);
  }
}
