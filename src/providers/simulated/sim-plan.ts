import { createHash } from "node:crypto";

export interface SimPlanOptions {
  latencyMs: number;
  latencyJitter: number;
  failureRate: number;
}

/** How one simulated job goes, decided by its prompt and seed alone. */
export interface SimPlan {
  /** Time from submission to the final status. */
  latencyMs: number;
  /** Fraction of `latencyMs` at which the job fails; null when it succeeds. */
  failAt: number | null;
  /** `[sim:reject]`: the job is refused as sensitive content. */
  rejected: boolean;
}

const LATENCY_DIRECTIVE = /\[sim:latency=(\d{1,7})\]/;

/**
 * The simulated provider's determinism, in one place: the same prompt and seed give the same
 * latency and the same failure, here and in the in-process adapter. Directives in the prompt:
 * `[sim:fail]`, `[sim:reject]`, `[sim:latency=MS]`.
 */
export function simPlan(prompt: string, seed: number, opts: SimPlanOptions): SimPlan {
  const digest = createHash("sha256").update(`${prompt}\u0000${seed}`).digest();
  const latencyDraw = digest.readUInt32BE(0) / 2 ** 32;
  const failureDraw = digest.readUInt32BE(4) / 2 ** 32;
  const directive = LATENCY_DIRECTIVE.exec(prompt);
  const latencyMs = directive
    ? Number(directive[1])
    : Math.max(0, Math.round(opts.latencyMs * (1 + opts.latencyJitter * (2 * latencyDraw - 1))));
  const fails = prompt.includes("[sim:fail]") || failureDraw < opts.failureRate;
  return { latencyMs, failAt: fails ? 0.5 : null, rejected: prompt.includes("[sim:reject]") };
}
