import type { Viewer } from "../auth/viewer";
import { RateLimitedError, ServiceUnavailableError } from "../common/errors";
import type { Priority } from "../entities";
import type { RateLimiter } from "./rate-limiter";

export interface AdmissionOptions {
  /** Queued generations per priority beyond which new ones are refused. */
  maxQueuedPerPriority: number;
  /** How long a queue depth reading is reused. @defaultValue 1000 */
  depthCacheMs?: number;
}

/**
 * Load shedding at the door of `generate`: a token bucket per credential, then a bound on the
 * queue of the requested priority. Refusing early keeps latency bounded for what is accepted.
 */
export class AdmissionControl {
  private readonly depth = new Map<Priority, { n: number; at: number }>();

  constructor(
    private readonly limiter: RateLimiter,
    private readonly queuedCount: (priority: Priority) => Promise<number>,
    private readonly opts: AdmissionOptions,
  ) {}

  async admit(viewer: Viewer, priority: Priority): Promise<void> {
    await this.admitRequest(viewer);
    await this.admitToQueue(priority);
  }

  /** The credential's rate limit: every request, served from the cache or not. */
  async admitRequest(viewer: Viewer): Promise<void> {
    const key = viewer.apiKeyId ?? `client:${viewer.accountId}:${viewer.userId ?? ""}`;
    const decision = await this.limiter.take(key);
    if (!decision.allowed) throw new RateLimitedError(decision.retryAfterSeconds);
  }

  /** The bound on the priority's queue: only for requests that will wait in it. */
  async admitToQueue(priority: Priority): Promise<void> {
    if ((await this.queued(priority)) >= this.opts.maxQueuedPerPriority) {
      throw new ServiceUnavailableError(`The ${priority} queue is full; retry later`, {
        retryAfterSeconds: 5,
      });
    }
    // Counted at once: the next reading is at most a second away, and until then this
    // process's own admissions must not slip past the bound.
    const cached = this.depth.get(priority);
    if (cached) cached.n++;
  }

  private async queued(priority: Priority): Promise<number> {
    const cached = this.depth.get(priority);
    if (cached && Date.now() - cached.at < (this.opts.depthCacheMs ?? 1000)) return cached.n;
    const n = await this.queuedCount(priority);
    this.depth.set(priority, { n, at: Date.now() });
    return n;
  }
}
