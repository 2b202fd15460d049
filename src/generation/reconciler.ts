import type { Logger } from "../common/logger";
import type { GenerationQueue } from "./generation.queue";
import type { GenerationRepository } from "./generation.repository";

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
      if (g.status === "QUEUED") {
        if (await this.queue.hasSubmit(g.id)) {
          await this.repo.touch(g.id);
          continue;
        }
        await this.queue.submit(g.id, g.priority);
      } else if (g.runningAttempt !== null) {
        // Its poll chain was lost: start a new one (the processor tells a lost submit apart).
        await this.queue.poll(g.id, g.runningAttempt, 0);
      } else {
        // Between attempts and its retry job was lost.
        await this.queue.retry(g.id, Date.now(), g.priority, 0);
      }
      await this.repo.touch(g.id);
      requeued++;
    }
    return requeued;
  }
}
