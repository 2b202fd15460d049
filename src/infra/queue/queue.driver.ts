/**
 * The generation queue, as the domain sees it. Jobs are small pointers (a generation id and a
 * step): Postgres holds the state, so losing the queue loses no work (the reconciler rebuilds
 * it). Deliberately left out: job results, progress and retries: the domain records those in
 * its own rows, and a job that throws is simply dropped (logged) after the driver's own attempt.
 */
export type JobName =
  "submit" | "poll" | "callback" | "alert" | "batch-collect" | "batch-submit" | "batch-poll";

export interface JobData {
  /** The generation the step is about; empty for batch steps. */
  generationId: string;
  /** For `batch-submit` and `batch-poll`: the batch. */
  batchId?: string;
  /** For `poll`: the attempt being watched. */
  attempt?: number;
  /** For `poll`: a single status check (a webhook's nudge) that schedules no next one. */
  once?: boolean;
  /** For `callback`: the delivery to attempt. */
  deliveryId?: string;
  /** For `alert`: the alert whose webhook to call (`attempt` counts its deliveries). */
  alertId?: string;
  /**
   * The W3C trace context (`traceparent`, `tracestate`) of the step that enqueued this one, so
   * a generation's steps across processes form one trace. Absent when tracing is off.
   */
  trace?: Record<string, string>;
}

export interface Job {
  id: string;
  name: JobName;
  data: JobData;
}

export interface EnqueueOptions {
  /** Unique id: adding a job whose id is already waiting, delayed or active does nothing. */
  jobId: string;
  delayMs?: number;
  /** 1 is served first. */
  priority?: number;
}

export type JobHandler = (job: Job) => Promise<void>;

export interface QueueConsumer {
  /** Stops taking jobs and waits for the active ones to finish. */
  close(): Promise<void>;
}

export interface ConsumeOptions {
  concurrency: number;
  /** How long a claim on a job lasts; jobs of a worker that died are served again after it. */
  lockMs?: number;
}

/** What the queue holds now, for the queue gauges. */
export interface QueueCounts {
  /** Ready to run (any priority, or none). */
  waiting: number;
  active: number;
  /** Scheduled for later: backoffs and the next status polls. */
  delayed: number;
  /** Waiting steps by their priority rank (1, 5, 10); steps without one are not in it. */
  byPriority: Record<number, number>;
}

export interface QueueDriver {
  add(name: JobName, data: JobData, opts: EnqueueOptions): Promise<void>;
  /**
   * Puts back a job that may have been lost: adds it unless one with its id is live (`has`),
   * and says whether it did. Unlike `add`, whatever a lost job left under its id cannot make
   * this a no-op.
   */
  restore(name: JobName, data: JobData, opts: EnqueueOptions): Promise<boolean>;
  /** Whether a job with this id is waiting, delayed or active. */
  has(jobId: string): Promise<boolean>;
  /** Removes a waiting or delayed job; an active one is left to finish. */
  remove(jobId: string): Promise<void>;
  consume(handler: JobHandler, opts: ConsumeOptions): QueueConsumer;
  /** Steps by state and the waiting ones by priority; every process sees the same queue. */
  counts(): Promise<QueueCounts>;
  close(): Promise<void>;
}

/** BullMQ priorities: lower runs first. */
export const PRIORITY_RANK = { INTERACTIVE: 1, STANDARD: 5, BATCH: 10 } as const;
