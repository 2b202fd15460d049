import { trace } from "@opentelemetry/api";
import pino from "pino";
import { currentLogFields } from "./log-context";

export type Logger = pino.Logger;

export interface LoggerOptions {
  /** Keep prompts, keys and tokens in log lines (`LOG_SENSITIVE`). @defaultValue false */
  sensitive?: boolean;
  /** Where lines go (tests capture them). @defaultValue stdout */
  destination?: pino.DestinationStream;
}

/** Field names whose values never reach a log line unless LOG_SENSITIVE is set. */
export const SENSITIVE_FIELDS = [
  "prompt",
  "negativePrompt",
  "originalPrompt",
  "authorization",
  "apiKey",
  "key",
  "token",
  "secret",
  "secrets",
  "password",
];

/**
 * pino's redaction paths for {@link SENSITIVE_FIELDS}: at the top of a line's object and one
 * or two levels down (`{ generation: { prompt } }`, `{ req: { headers: { authorization } } }`).
 */
export const REDACT_PATHS = SENSITIVE_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  opts: LoggerOptions = {},
): Logger {
  return pino(
    {
      level,
      base: { service: "gengate", ...bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: opts.sensitive ? undefined : { paths: REDACT_PATHS, censor: "[redacted]" },
      // The generation a queue step is about and the active trace, on every line written
      // inside it; fields the call passes itself win.
      mixin() {
        const fields: Record<string, string> = {};
        const g = currentLogFields()?.generationId;
        if (g) fields.generationId = g;
        const span = trace.getActiveSpan()?.spanContext();
        if (span && trace.isSpanContextValid(span)) {
          fields.traceId = span.traceId;
          fields.spanId = span.spanId;
        }
        return fields;
      },
    },
    opts.destination,
  );
}
