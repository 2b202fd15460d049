import type { MediaType } from "../../entities";
import {
  ProviderError,
  type BatchItem,
  type BatchState,
  type FinishedJobState,
  type ProviderAdapter,
  type ProviderBatchApi,
  type ProviderJobState,
  type ProviderRequest,
  type SubmitResult,
} from "../provider.adapter";
import { simPlan } from "./sim-plan";
import { renderSimulated } from "./sim-defects";

export interface SimulatedProviderOptions {
  /** Median time from submit to result. @defaultValue 3000 */
  latencyMs: number;
  /** Spread of the latency as a fraction of the median, drawn per seed. @defaultValue 0.3 */
  latencyJitter: number;
  /** Share of jobs that fail, drawn per seed. @defaultValue 0 */
  failureRate: number;
  /** Number of distinct progress values reported before the result. @defaultValue 5 */
  progressSteps: number;
  now?: () => number;
}

/** Everything needed to answer about a job, carried in its id so any process can answer. */
interface SimJob {
  v: 1;
  t: number;
  latency: number;
  failAt: number | null;
  mediaType: MediaType;
  prompt: string;
  seed: number;
  w?: number;
  h?: number;
  d?: number;
}

/**
 * The built-in simulated provider. Deterministic for a given prompt and seed: latency,
 * failure and the rendered output all derive from them. Stateless: a job's id encodes the job,
 * so a restarted worker (or another one) can still ask for its status.
 *
 * Prompt directives for demos and tests: `[sim:fail]` fails the job, `[sim:latency=MS]` sets
 * its latency, `[sim:reject]` refuses it at submit (not retryable); the bad outputs of
 * `sim-defects.ts` (`[sim:black]`, `[sim:truncated]`, …) succeed with a faulty file.
 */
export class SimulatedProviderAdapter implements ProviderAdapter {
  readonly name = "simulated";
  readonly supportsWebhooks = false;
  readonly batch: ProviderBatchApi;
  private readonly now: () => number;

  constructor(private readonly opts: SimulatedProviderOptions) {
    this.now = opts.now ?? Date.now;
    this.batch = new SimulatedBatchApi(opts, this.now);
  }

  async submit(req: ProviderRequest): Promise<SubmitResult> {
    const plan = simPlan(req.prompt, req.seed, this.opts);
    if (plan.rejected) {
      throw new ProviderError("prompt refused by the simulated provider", "CONTENT_REFUSED", false);
    }
    const job: SimJob = {
      v: 1,
      t: this.now(),
      latency: plan.latencyMs,
      failAt: plan.failAt,
      mediaType: req.mediaType,
      prompt: req.prompt,
      seed: req.seed,
      w: req.width,
      h: req.height,
      d: req.durationSeconds,
    };
    return { providerJobId: encodeJob(job), pollAfterMs: this.stepMs(job) };
  }

  async getStatus(providerJobId: string): Promise<ProviderJobState> {
    const job = decodeJob(providerJobId);
    const elapsed = this.now() - job.t;
    const fraction = job.latency <= 0 ? 1 : Math.min(1, elapsed / job.latency);
    if (job.failAt !== null && fraction >= job.failAt) {
      return {
        status: "failed",
        error: new ProviderError("simulated provider failure", "PROVIDER_ERROR", true),
      };
    }
    if (fraction < 1) {
      const steps = this.opts.progressSteps;
      const progress = Math.floor(fraction * steps) / steps;
      const toNextStep = job.latency * ((Math.floor(fraction * steps) + 1) / steps) - elapsed;
      return { status: "processing", progress, pollAfterMs: Math.max(1, Math.ceil(toNextStep)) };
    }
    return { status: "succeeded", outputs: [render(job)], costUsd: undefined };
  }

  async cancel(): Promise<void> {
    // Nothing runs anywhere: a canceled simulated job simply stops being asked about.
  }

  private stepMs(job: SimJob): number {
    return Math.max(1, Math.ceil(job.latency / this.opts.progressSteps));
  }
}

/** One item of a simulated batch: the job, under its custom id. */
interface SimBatchItem extends Omit<SimJob, "v" | "t"> {
  c: string;
  rejected?: true;
}

interface SimBatch {
  v: 1;
  t: number;
  items: SimBatchItem[];
}

/**
 * The simulated provider's batch API, shaped like OpenAI's Batch: items with custom ids, one
 * status for the batch, a result per custom id, at half the price. The batch finishes when its
 * slowest item would have; each item fails, is refused or succeeds exactly as the same request
 * would on its own (`simPlan`). Stateless like the jobs: the batch id carries the batch, so
 * submitting the same batch twice asks for nothing twice (nothing runs anywhere).
 */
export class SimulatedBatchApi implements ProviderBatchApi {
  readonly discount = 0.5;
  readonly maxItems = 1000;

  constructor(
    private readonly opts: SimulatedProviderOptions,
    private readonly now: () => number,
  ) {}

  async submit(items: BatchItem[]): Promise<{ providerBatchId: string; pollAfterMs?: number }> {
    const batch: SimBatch = {
      v: 1,
      t: this.now(),
      items: items.map(({ customId, request: r }) => {
        const plan = simPlan(r.prompt, r.seed, this.opts);
        return {
          c: customId,
          latency: plan.latencyMs,
          failAt: plan.failAt,
          mediaType: r.mediaType,
          prompt: r.prompt,
          seed: r.seed,
          w: r.width,
          h: r.height,
          d: r.durationSeconds,
          ...(plan.rejected ? { rejected: true as const } : {}),
        };
      }),
    };
    return { providerBatchId: encodeBatch(batch), pollAfterMs: this.remainingMs(batch) };
  }

  async getStatus(providerBatchId: string): Promise<BatchState> {
    const batch = decodeBatch(providerBatchId);
    const elapsed = this.now() - batch.t;
    const remaining = this.remainingMs(batch);
    if (remaining > 0) {
      return {
        status: "pending",
        finished: batch.items.filter((i) => i.rejected || i.latency <= elapsed).length,
        pollAfterMs: remaining,
      };
    }
    const results = new Map<string, FinishedJobState>();
    for (const item of batch.items) {
      if (item.rejected) {
        results.set(item.c, {
          status: "failed",
          error: new ProviderError(
            "prompt refused by the simulated provider",
            "CONTENT_REFUSED",
            false,
          ),
        });
      } else if (item.failAt !== null) {
        results.set(item.c, {
          status: "failed",
          error: new ProviderError("simulated provider failure", "PROVIDER_ERROR", true),
        });
      } else {
        results.set(item.c, { status: "succeeded", outputs: [render({ ...item, v: 1, t: 0 })] });
      }
    }
    return { status: "completed", results };
  }

  private remainingMs(batch: SimBatch): number {
    const slowest = Math.max(0, ...batch.items.map((i) => (i.rejected ? 0 : i.latency)));
    return Math.max(0, batch.t + slowest - this.now());
  }
}

function encodeBatch(batch: SimBatch): string {
  return `simb_${Buffer.from(JSON.stringify(batch)).toString("base64url")}`;
}

function decodeBatch(id: string): SimBatch {
  try {
    if (!id.startsWith("simb_")) throw new Error("prefix");
    const batch = JSON.parse(Buffer.from(id.slice(5), "base64url").toString("utf8")) as SimBatch;
    if (batch.v !== 1 || !Array.isArray(batch.items)) throw new Error("version");
    return batch;
  } catch {
    throw new ProviderError(
      `unknown simulated batch ${id.slice(0, 24)}`,
      "PROVIDER_JOB_NOT_FOUND",
      false,
    );
  }
}

function render(job: SimJob) {
  return renderSimulated({
    mediaType: job.mediaType,
    prompt: job.prompt,
    seed: job.seed,
    width: job.w ?? 512,
    height: job.h ?? 512,
    durationSeconds: job.d ?? (job.mediaType === "AUDIO" ? 5 : 2),
  });
}

function encodeJob(job: SimJob): string {
  return `sim_${Buffer.from(JSON.stringify(job)).toString("base64url")}`;
}

function decodeJob(id: string): SimJob {
  try {
    if (!id.startsWith("sim_")) throw new Error("prefix");
    const job = JSON.parse(Buffer.from(id.slice(4), "base64url").toString("utf8")) as SimJob;
    if (job.v !== 1) throw new Error("version");
    return job;
  } catch {
    throw new ProviderError(
      `unknown simulated job ${id.slice(0, 24)}`,
      "PROVIDER_JOB_NOT_FOUND",
      false,
    );
  }
}
