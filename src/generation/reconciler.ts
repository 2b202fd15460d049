import type { Logger } from "../common/logger";
import type { GenerationQueue } from "./generation.queue";
import type { GenerationRepository, StaleGeneration } from "./generation.repository";

export interface ReconcilerOptions {
  intervalMs: number;
  /** Unfinished rows untouched for this long are checked against the queue. */
  staleSeconds: number;
  /** Rows looked at per pass. @defaultValue 500 */
  batchSize?: number;
  /**
   * Whether the queue starts empty (in-process): then every unfinished row is an orphan at
   * start, and the first pass takes them all instead of waiting for them to go stale.
   */
  queueStartsEmpty?: boolean;
}

/**
 * Postgres is the source of truth and Redis may lose everything: this puts back into the
 * queue what rows say is unfinished but nothing is driving any more. Running it twice, or in
 * every worker at once, is harmless: job ids and conditional transitions absorb duplicates.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly repo: GenerationRepository,
    private readonly queue: GenerationQueue,
    private readonly opts: ReconcilerOptions,
    private readonly logger: Logger,
    /** Callback deliveries are rows too: those overdue get their job back. */
    private readonly callbacks?: { requeueDue(): Promise<number> },
    /** Expired semantic-cache rows are filtered out of lookups; this deletes them. */
    private readonly cache?: { sweepExpired(): Promise<number> },
    /** Batches: due groups collected, lost submit and status-check jobs put back. */
    private readonly batches?: { reconcile(): Promise<number> },
    /** The usage rollup's shards of past days, folded (and its rows of zeros dropped). */
    private readonly usage?: { compactRollup(): Promise<number> },
  ) {}

  start(): void {
    let first = this.opts.queueStartsEmpty === true;
    const tick = () => {
      const staleSeconds = first ? 0 : this.opts.staleSeconds;
      first = false;
      this.running = this.runOnce(staleSeconds)
        .then((n) => {
          if (n > 0) this.logger.info({ requeued: n }, "reconciler re-enqueued generations");
        })
        .catch((err: unknown) => this.logger.error({ err }, "reconciler pass failed"))
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.opts.intervalMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass; returns how many generations it re-enqueued. */
  async runOnce(staleSeconds = this.opts.staleSeconds): Promise<number> {
    const stale = await this.repo.findStale(staleSeconds, this.opts.batchSize ?? 500);
    let requeued = 0;
    for (const g of stale) {
      if (await this.requeue(g)) requeued++;
      // Either way the row is looked after now: leave it alone for another stale period.
      else await this.repo.touch(g.id);
    }
    if (this.callbacks) requeued += await this.callbacks.requeueDue();
    if (this.batches) requeued += await this.batches.reconcile();
    if (this.cache) {
      const swept = await this.cache.sweepExpired();
      if (swept > 0) this.logger.info({ swept }, "expired semantic cache entries deleted");
    }
    if (this.usage) {
      // Only how many rows reports read depends on it: a failure must not stop the pass.
      await this.usage.compactRollup().then(
        (rows) => rows > 0 && this.logger.debug({ rows }, "usage rollup compacted"),
        (err: unknown) => this.logger.warn({ err }, "usage rollup not compacted"),
      );
    }
    return requeued;
  }

  /** Puts back the job that should be driving the generation; false when one still is. */
  private async requeue(g: StaleGeneration): Promise<boolean> {
    if (g.status === "QUEUED") {
      if (!(await this.queue.restoreSubmit(g.id, g.priority))) return false;
      await this.repo.touch(g.id);
      return true;
    }
    if (g.runningAttempt === null) {
      // Between two attempts, and the job that was to start the next one is gone.
      await this.queue.resubmit(g.id, g.priority);
      await this.repo.touch(g.id);
      return true;
    }
    // A worker that was down leaves its delayed status check in the queue: that chain is
    // still alive, and a second one would only race it.
    if (g.pollJobId && (await this.queue.has(g.pollJobId))) return false;
    // The chain was lost: start a new one (the processor tells a lost submit apart).
    const next = this.queue.pollJobId(g.id, g.runningAttempt);
    await this.repo.notePoll(g.id, g.runningAttempt, next);
    await this.queue.poll(g.id, g.runningAttempt, 0, next);
    return true;
  }
}
