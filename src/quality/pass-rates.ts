import type { Logger } from "../common/logger";
import type { PassCount } from "./pass-rate.repository";

/** What model selection reads: a model's recent quality pass rate, when there is enough data. */
export interface PassRates {
  /** 0..1, or undefined when the model has too few judged attempts to say. */
  rate(model: string): number | undefined;
}

export interface PassRateOptions {
  windowHours: number;
  /** Judged attempts a model needs before its rate is used. */
  minObservations: number;
  /** How often the counts are read again. @defaultValue 60 s */
  refreshMs?: number;
}

/**
 * Recent pass rates held in memory and refreshed in the background, so selection (on the
 * request path, synchronous) never waits on a query. Until the first read, and for models
 * with fewer than `minObservations` judged attempts, no rate is known.
 */
export class PassRateTracker implements PassRates {
  private counts = new Map<string, PassCount>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: { recent(windowHours: number): Promise<Map<string, PassCount>> },
    private readonly opts: PassRateOptions,
    private readonly logger: Logger,
  ) {}

  rate(model: string): number | undefined {
    const c = this.counts.get(model);
    if (!c || c.judged < this.opts.minObservations) return undefined;
    return c.passed / c.judged;
  }

  async refresh(): Promise<void> {
    try {
      this.counts = await this.source.recent(this.opts.windowHours);
    } catch (err) {
      // Stale rates are better than none: keep the last ones.
      this.logger.warn({ err }, "quality pass rates not refreshed");
    }
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs ?? 60_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
