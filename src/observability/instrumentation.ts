import { SpanKind } from "@opentelemetry/api";
import { withLogFields } from "../common/log-context";
import type { JobData, QueueDriver } from "../infra/queue/queue.driver";
import type { ProviderAdapter } from "../providers/provider.adapter";
import { ProviderRegistry } from "../providers/provider.registry";
import type { Metrics } from "./metrics";
import { contextFrom, traceCarrier, withSpan } from "./tracing";

/**
 * The queue with telemetry around it, so no domain code has to think about it: every job
 * added carries the active trace context, and every job run is a span (a child of the one
 * that enqueued it, in whichever process that was), counted in `gengate_jobs_in_flight`, with
 * its generation id on every log line written while it runs.
 */
export function instrumentQueue(
  driver: QueueDriver,
  metrics: Pick<Metrics, "jobRunning">,
  /**
   * The trace a generation started in: a step enqueued outside any trace (a provider's
   * webhook, the reconciler) continues its generation's instead of starting a new one.
   */
  storedTrace?: (generationId: string) => Promise<Record<string, string> | undefined>,
): QueueDriver {
  const traced = async (data: JobData): Promise<JobData> => {
    const trace =
      traceCarrier() ??
      (storedTrace && data.generationId
        ? await storedTrace(data.generationId).catch(() => undefined)
        : undefined);
    return trace ? { ...data, trace } : data;
  };
  return {
    add: async (name, data, opts) => driver.add(name, await traced(data), opts),
    restore: async (name, data, opts) => driver.restore(name, await traced(data), opts),
    has: (jobId) => driver.has(jobId),
    remove: (jobId) => driver.remove(jobId),
    counts: () => driver.counts(),
    close: () => driver.close(),
    consume: (handler, opts) =>
      driver.consume(async (job) => {
        metrics.jobRunning(1);
        try {
          const generationId = job.data.generationId || undefined;
          await withLogFields({ generationId }, () =>
            withSpan(
              `job ${job.name}`,
              {
                "messaging.system": "gengate",
                "messaging.operation.name": job.name,
                "messaging.message.id": job.id,
                ...(generationId ? { "gengate.generation.id": generationId } : {}),
                ...(job.data.attempt !== undefined ? { "gengate.attempt": job.data.attempt } : {}),
              },
              () => handler(job),
              { parent: contextFrom(job.data.trace), kind: SpanKind.CONSUMER },
            ),
          );
        } finally {
          metrics.jobRunning(-1);
        }
      }, opts),
  };
}

const TRACED_CALLS = new Set(["submit", "getStatus", "cancel"]);

/**
 * The registry with each adapter's provider calls (`submit`, `getStatus`, `cancel`) in a span
 * of their own, children of the worker step that makes them. The adapters' HTTP requests are
 * spans again, inside these (`providerFetch`).
 */
export function traceProviders(registry: ProviderRegistry): ProviderRegistry {
  return new ProviderRegistry(registry.names().map((name) => traced(registry.get(name)!)));
}

function traced(adapter: ProviderAdapter): ProviderAdapter {
  return new Proxy(adapter, {
    get(target, prop) {
      // Read from and bound to the adapter itself, so its private fields keep working.
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== "function") return value;
      if (typeof prop !== "string" || !TRACED_CALLS.has(prop))
        return (value as (...args: unknown[]) => unknown).bind(target);
      const call = value as (...args: unknown[]) => Promise<unknown>;
      return (...args: unknown[]) => {
        const first = args[0] as { model?: unknown; attempt?: unknown } | string;
        return withSpan(
          `provider ${prop}`,
          {
            "gengate.provider": target.name,
            ...(typeof first === "object" && typeof first.model === "string"
              ? { "gengate.provider.model": first.model }
              : {}),
          },
          () => call.apply(target, args),
          { kind: SpanKind.CLIENT },
        );
      };
    },
  });
}
