import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

/**
 * Tracing: one trace per generation, from the api's `generate` through the queue to the
 * worker's steps and the provider's HTTP calls.
 *
 * Nothing here registers anything unless {@link startTracing} is given an endpoint: the
 * `@opentelemetry/api` defaults are then no-ops (spans are not recorded, nothing is injected
 * into jobs), so a deployment without a collector pays for a few function calls.
 */
const TRACER = "gengate";

export interface Tracing {
  /** Flushes the spans still buffered and stops exporting. */
  shutdown(): Promise<void>;
}

export interface TracingOptions {
  /** OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); unset: no tracing. */
  endpoint?: string;
  /** `service.name` of the spans. @defaultValue gengate */
  serviceName?: string;
  /** Extra resource attributes (the process role). */
  attributes?: Attributes;
}

/**
 * Registers the process-wide tracer provider (with the W3C trace-context propagator and an
 * AsyncLocalStorage context manager) exporting over OTLP/HTTP in batches. Once per process:
 * `main.ts` calls it, never `createApp`, so tests may register their own provider instead.
 */
export function startTracing(opts: TracingOptions): Tracing {
  if (!opts.endpoint) return { shutdown: async () => undefined };
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": opts.serviceName ?? "gengate",
      ...opts.attributes,
    }),
    spanProcessors: [
      new BatchSpanProcessor(
        new OTLPTraceExporter({ url: `${opts.endpoint.replace(/\/+$/, "")}/v1/traces` }),
      ),
    ],
  });
  provider.register();
  return { shutdown: () => provider.shutdown() };
}

/**
 * Runs `fn` inside a new active span (a child of `parent`, else of the active context) and
 * ends it; a throw marks the span failed and is rethrown unchanged.
 */
export function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  opts: { parent?: Context; kind?: SpanKind } = {},
): Promise<T> {
  return trace
    .getTracer(TRACER)
    .startActiveSpan(
      name,
      { attributes, kind: opts.kind ?? SpanKind.INTERNAL },
      opts.parent ?? context.active(),
      async (span) => {
        try {
          return await fn(span);
        } catch (err) {
          // The error's class and code only: messages may quote provider answers.
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.name });
          const code = (err as { code?: unknown })?.code;
          if (typeof code === "string") span.setAttribute("gengate.error.code", code);
          throw err;
        } finally {
          span.end();
        }
      },
    );
}

/** The active trace context as W3C headers (`traceparent`), to carry in a job; undefined when none. */
export function traceCarrier(): Record<string, string> | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent ? carrier : undefined;
}

/** The context a carrier describes (the root context when it is absent or malformed). */
export function contextFrom(carrier: Record<string, string> | undefined): Context {
  return carrier ? propagation.extract(context.active(), carrier) : context.active();
}
