import { z } from "zod";

/**
 * Configuration, read from the environment once at start and validated as a whole.
 * A missing or malformed value fails at start with a sentence naming the variable.
 */
const intFrom = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const optionalUrl = (protocols: string[]) =>
  z
    .string()
    .trim()
    .optional()
    .transform((v) => (v === "" ? undefined : v))
    .refine(
      (v) => v === undefined || protocols.some((p) => v.startsWith(`${p}://`)),
      `must be a URL starting with ${protocols.map((p) => `${p}://`).join(" or ")}`,
    );

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const secret = z.string().min(8, "must be at least 8 characters").optional();

const schema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  HOST: z.string().default("0.0.0.0"),
  PORT: intFrom(0, 65535).default(4000),
  /** Base URL under which this service is reachable by clients (output links). */
  PUBLIC_URL: optionalUrl(["http", "https"]),
  /** Postgres connection string; unset means the embedded PGlite database in DATA_DIR. */
  DATABASE_URL: optionalUrl(["postgres", "postgresql"]),
  DB_POOL_SIZE: intFrom(1, 200).default(10),
  /**
   * Parameterised statements as named prepared statements, parsed once per connection. Off
   * behind a pooler that does not keep them (PgBouncer in transaction mode before 1.21).
   */
  DB_PREPARED_STATEMENTS: bool.default("true"),
  /** Redis connection string; unset means in-process queue, pub/sub and cache. */
  REDIS_URL: optionalUrl(["redis", "rediss"]),
  /**
   * Redis Sentinel: comma-separated `host:port` of the sentinels. The master is then found
   * through them by REDIS_SENTINEL_NAME, and REDIS_URL gives only credentials, database and TLS.
   */
  REDIS_SENTINELS: z
    .string()
    .trim()
    .regex(
      /^[A-Za-z0-9.:[\]-]+:\d{1,5}(,\s*[A-Za-z0-9.:[\]-]+:\d{1,5})*$/,
      "must be comma-separated host:port pairs",
    )
    .optional(),
  REDIS_SENTINEL_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 _ . -")
    .default("mymaster"),
  /** The sentinels' own password, when they require one (the master's is in REDIS_URL). */
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  /** Prefix for every Redis key and channel, so several deployments can share one Redis. */
  REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 _ . -")
    .default("gengate"),
  DATA_DIR: z.string().default(".gengate"),
  /** Signs client tokens and output URLs. Required with DATABASE_URL; generated and kept in DATA_DIR otherwise. */
  TOKEN_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  /** Origins allowed to call /graphql from a browser: `*`, or a comma-separated list. */
  CORS_ORIGINS: z.string().default("*"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** Keep prompts, API keys and tokens in log lines (debugging only). */
  LOG_SENSITIVE: bool.default("false"),
  /** GraphiQL at GET /graphql for browsers. Unset: on, except with NODE_ENV=production. */
  PLAYGROUND: bool.optional(),
  /**
   * A listener of its own for GET /metrics: `off`, or a port (0: any free one). Unset: 9464 for
   * `worker`, off for `api` and `all`, which serve /metrics on PORT.
   */
  METRICS_PORT: z.union([z.literal("off"), intFrom(0, 65535)]).optional(),
  /** OTLP/HTTP collector base URL; unset means no tracing at all. */
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl(["http", "https"]),
  WORKER_CONCURRENCY: intFrom(1, 1000).default(16),
  /** How long a worker's claim on a job lasts without renewal; a dead worker's jobs return after it. */
  QUEUE_LOCK_MS: intFrom(1000, 600000).default(30000),
  RECONCILE_INTERVAL_SECONDS: z.coerce.number().min(0.05).max(3600).default(15),
  /** A PROCESSING generation untouched for this long is considered lost by the queue. */
  RECONCILE_STALE_SECONDS: z.coerce.number().min(0.1).max(86400).default(60),
  POLL_MIN_MS: intFrom(10, 600000).default(500),
  POLL_MAX_MS: intFrom(10, 600000).default(5000),
  /** Public base URL providers can reach for webhooks; unset means every job is polled. */
  WEBHOOK_BASE_URL: optionalUrl(["http", "https"]),
  /** Caps every model's own provider timeout (seconds); unset keeps the catalog's. */
  PROVIDER_TIMEOUT_SECONDS: z.coerce.number().min(0.1).max(86400).optional(),
  /** The model catalog is reloaded this often even without a change notice (a lost one). */
  CATALOG_RELOAD_SECONDS: z.coerce.number().min(1).max(86400).default(60),
  /** Attempts per generation across the fallback chain, and the time all of them may take. */
  MAX_ATTEMPTS: intFrom(1, 20).default(3),
  MAX_GENERATION_SECONDS: z.coerce.number().min(1).max(86400).default(900),
  /** Circuit breakers: failure rate over a sliding window, with a minimum of requests. */
  CIRCUIT_WINDOW_SECONDS: z.coerce.number().min(1).max(3600).default(60),
  CIRCUIT_MIN_REQUESTS: intFrom(1, 10000).default(10),
  CIRCUIT_FAILURE_THRESHOLD: z.coerce.number().min(0.01).max(1).default(0.5),
  CIRCUIT_COOLDOWN_SECONDS: z.coerce.number().min(0.1).max(3600).default(30),
  /** Per API key token bucket on generate: sustained rate and burst. */
  RATE_LIMIT_PER_SECOND: z.coerce.number().min(0.01).max(100000).default(10),
  RATE_LIMIT_BURST: intFrom(1, 1000000).default(50),
  /**
   * What one GraphQL operation may ask, over HTTP and the WebSocket: fields nested this deep
   * (fragments followed), this estimated cost (a field costs 1; a list multiplies its selection
   * by `first`, or by 10), and this many lexical tokens.
   */
  MAX_QUERY_DEPTH: intFrom(2, 100).default(15),
  MAX_QUERY_COMPLEXITY: intFrom(10, 10000000).default(10000),
  MAX_QUERY_TOKENS: intFrom(100, 1000000).default(5000),
  /** Largest HTTP request body and largest WebSocket message (bytes). */
  MAX_REQUEST_BYTES: intFrom(1024, 100 * 1024 * 1024).default(1024 * 1024),
  /**
   * Per api process: WebSocket connections of one credential (an API key, or one end user's
   * client tokens; connections without credentials count as one), operations in flight on
   * one connection and on all of one credential's, and connections in all.
   */
  WS_MAX_CONNECTIONS_PER_KEY: intFrom(1, 1000000).default(100),
  WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: intFrom(1, 1000000).default(100),
  WS_MAX_SUBSCRIPTIONS_PER_KEY: intFrom(1, 10000000).default(1000),
  WS_MAX_CONNECTIONS: intFrom(1, 10000000).default(10000),
  /** Queued generations per priority beyond which generate answers SERVICE_UNAVAILABLE. */
  MAX_QUEUED_PER_PRIORITY: intFrom(1, 10000000).default(10000),
  /** With webhooks, how often a status check still runs in case one is lost. */
  WEBHOOK_BACKSTOP_POLL_MS: intFrom(1000, 3600000).default(60000),
  /**
   * BATCH-priority generations wait (BATCHED) until this many for one model and provider are
   * waiting, or the oldest has waited BATCH_TIMEOUT_SECONDS; then they go out as one batch.
   */
  BATCH_SIZE: intFrom(1, 1000).default(50),
  BATCH_TIMEOUT_SECONDS: z.coerce.number().min(0.05).max(86400).default(60),
  OUTPUT_URL_TTL_SECONDS: intFrom(60, 30 * 86400).default(86400),
  SHUTDOWN_TIMEOUT_SECONDS: z.coerce.number().min(0).max(600).default(25),
  /** Providers: each turns on when its key is set. Base URLs are for tests and proxies. */
  REPLICATE_API_TOKEN: secret,
  REPLICATE_WEBHOOK_SECRET: secret,
  REPLICATE_BASE_URL: optionalUrl(["http", "https"]),
  FAL_KEY: secret,
  FAL_BASE_URL: optionalUrl(["http", "https"]),
  FAL_JWKS_URL: optionalUrl(["http", "https"]),
  WAVESPEED_API_KEY: secret,
  WAVESPEED_WEBHOOK_SECRET: secret,
  WAVESPEED_BASE_URL: optionalUrl(["http", "https"]),
  OPENAI_API_KEY: secret,
  OPENAI_BASE_URL: optionalUrl(["http", "https"]),
  /** A `gengate sim-provider` server to use instead of the in-process simulated provider. */
  SIM_PROVIDER_URL: z
    .string()
    .optional()
    .transform((v) => (v?.trim() ? v.trim() : undefined))
    .refine(
      (v) =>
        v === undefined ||
        (v.split(",").length <= 3 && v.split(",").every((u) => /^https?:\/\//.test(u.trim()))),
      "must be one to three http(s) URLs, comma-separated",
    ),
  SIM_PROVIDER_TOKEN: secret,
  SIM_PROVIDER_WEBHOOK_SECRET: secret,
  /** `gengate sim-provider`: its port, its public URL (for output links) and fault mode. */
  SIM_PROVIDER_PORT: intFrom(0, 65535).default(4010),
  SIM_PROVIDER_PUBLIC_URL: optionalUrl(["http", "https"]),
  SIM_PROVIDER_MODE: z.enum(["normal", "down", "rate-limited", "flaky", "hang"]).default("normal"),
  /** S3-compatible object store for outputs; unset means the local folder DATA_DIR/objects. */
  S3_BUCKET: z.string().min(3).optional(),
  S3_REGION: z.string().default("us-east-1"),
  S3_ENDPOINT: optionalUrl(["http", "https"]),
  /** Unset: path style exactly when S3_ENDPOINT is set (MinIO and most S3-compatible stores). */
  S3_FORCE_PATH_STYLE: bool.optional(),
  S3_ACCESS_KEY_ID: z.string().optional(),
  S3_SECRET_ACCESS_KEY: z.string().optional(),
  S3_PREFIX: z.string().default(""),
  /** Monthly budget of an end user without a limit of their own, by tier (USD). */
  BUDGET_FREE_USD: z.coerce.number().min(0).max(1e8).default(5),
  BUDGET_PRO_USD: z.coerce.number().min(0).max(1e8).default(100),
  BUDGET_ENTERPRISE_USD: z.coerce.number().min(0).max(1e8).default(10000),
  /** Tier of an end user seen for the first time (setBudget changes it). */
  DEFAULT_TIER: z.enum(["FREE", "PRO", "ENTERPRISE"]).default("PRO"),
  /** How long a paid result answers identical and similar requests (24 h). */
  CACHE_TTL_SECONDS: intFrom(1, 365 * 86400).default(86400),
  /** Semantic matching of similar prompts (accounts may still opt out). */
  SEMANTIC_CACHE: bool.default("true"),
  /**
   * How long stored outputs are kept (the object store's lifecycle rule, which gengate does
   * not enforce); unset means kept for good. Cached results never outlive their outputs.
   */
  OUTPUT_RETENTION_HOURS: z.coerce.number().min(1).max(87600).optional(),
  /** Cosine similarity at or above which a similar prompt is served from the cache. */
  SEMANTIC_CACHE_THRESHOLD: z.coerce.number().gt(0).max(1).default(0.85),
  /**
   * An OpenAI-compatible embeddings API (OpenAI, Ollama, vLLM, TEI) for the semantic cache;
   * unset means the local lexical embedding, which needs no network.
   */
  EMBEDDINGS_URL: optionalUrl(["http", "https"]),
  EMBEDDINGS_MODEL: z.string().min(1).default("text-embedding-3-small"),
  EMBEDDINGS_API_KEY: z.string().optional(),
  /** Vector size the model returns (pgvector's HNSW index takes at most 2000). */
  EMBEDDINGS_DIMENSIONS: intFrom(1, 2000).default(1536),
  /** Ask the server for EMBEDDINGS_DIMENSIONS (models trained to shorten, e.g. OpenAI's v3). */
  EMBEDDINGS_REQUEST_DIMENSIONS: bool.default("false"),
  EMBEDDINGS_TIMEOUT_MS: intFrom(50, 60000).default(2000),
  /**
   * Anomaly detection on rolling baselines (model latency, provider error rate, account spend
   * per hour, cache hit rate): a sample this many deviations out raises a warning, or a
   * critical alert; never during the warm-up, and once per series per cool-down.
   */
  ANOMALY_DETECTION: bool.default("true"),
  ANOMALY_WARNING_SIGMA: z.coerce.number().min(1).max(100).default(3),
  ANOMALY_CRITICAL_SIGMA: z.coerce.number().min(1).max(100).default(5),
  /** EWMA weight of each new sample: about 2/alpha samples make the baseline. */
  ANOMALY_EWMA_ALPHA: z.coerce.number().gt(0).max(1).default(0.05),
  ANOMALY_WARMUP_SAMPLES: intFrom(2, 1000000).default(20),
  ANOMALY_COOLDOWN_SECONDS: z.coerce
    .number()
    .min(0)
    .max(30 * 86400)
    .default(3600),
  /** Provider attempts per error-rate sample, cache lookups per hit-rate sample. */
  ANOMALY_ERROR_WINDOW: intFrom(1, 1000000).default(20),
  ANOMALY_CACHE_WINDOW: intFrom(1, 1000000).default(100),
  /** The operators' alert webhook (Slack-compatible): system alerts, those of no account. */
  ALERT_WEBHOOK_URL: optionalUrl(["http", "https"]),
  /**
   * Quality gate: every output is checked before it is accepted; a failed check is a failed
   * attempt (the next provider is tried). The technical check reads the file itself.
   */
  QUALITY_TECHNICAL: bool.default("true"),
  /** An image whose every colour channel's std-dev (0-255) is at or under this is one flat colour. */
  QUALITY_MIN_STDDEV: z.coerce.number().min(0).max(128).default(2),
  /** A picture whose every colour channel's mean (0-255) is at or under this is a black frame. */
  QUALITY_BLACK_MAX_MEAN: z.coerce.number().min(0).max(255).default(8),
  /** Allowed difference from the asked width/height and duration, as fractions. */
  QUALITY_SIZE_TOLERANCE: z.coerce.number().min(0).max(1).default(0.1),
  QUALITY_DURATION_TOLERANCE: z.coerce.number().min(0).max(1).default(0.1),
  /** Text-image alignment scorer (see README, "Quality gate"); unset turns the check off. */
  QUALITY_ALIGNMENT_URL: optionalUrl(["http", "https"]),
  QUALITY_ALIGNMENT_API_KEY: z.string().optional(),
  QUALITY_ALIGNMENT_MIN: z.coerce.number().min(-1).max(1).default(0.25),
  /** `openai`: OpenAI's moderation endpoint with OPENAI_API_KEY / OPENAI_BASE_URL. */
  QUALITY_MODERATION: z.enum(["off", "openai"]).default("off"),
  QUALITY_MODERATION_MODEL: z.string().min(1).default("omni-moderation-latest"),
  /** A moderation category score at or above this fails the output even when not flagged. */
  QUALITY_MODERATION_MAX_SCORE: z.coerce.number().gt(0).max(1).optional(),
  /** A check whose service errs or times out: `skip` it (accept the output) or `fail` it. */
  QUALITY_ON_ERROR: z.enum(["skip", "fail"]).default("skip"),
  QUALITY_CHECK_TIMEOUT_MS: intFrom(100, 120000).default(5000),
  /**
   * Model selection ranks by cost per accepted output (price / quality pass rate) for models
   * with at least this many judged attempts in the window; others by price alone.
   */
  QUALITY_PASS_RATE_WINDOW_HOURS: z.coerce.number().min(0.01).max(8760).default(168),
  QUALITY_PASS_RATE_MIN_OBSERVATIONS: intFrom(1, 1000000).default(20),
  /** Tests only: let callbacks reach private and loopback addresses. */
  CALLBACKS_ALLOW_PRIVATE: bool.default("false"),
  SIM_LATENCY_MS: intFrom(0, 600000).default(3000),
  SIM_LATENCY_JITTER: z.coerce.number().min(0).max(1).default(0.3),
  SIM_FAILURE_RATE: z.coerce.number().min(0).max(1).default(0),
  SIM_PROGRESS_STEPS: intFrom(1, 100).default(5),
});

export type Env = z.infer<typeof schema>;

export interface Config extends Omit<Env, "PUBLIC_URL" | "PLAYGROUND"> {
  PUBLIC_URL: string;
  PLAYGROUND: boolean;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable (`PORT=`) means unset, as in most tools, not zero or "".
  const present = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  const c = parsed.data;
  if (c.DATABASE_URL && !c.TOKEN_SECRET) {
    throw new ConfigError(
      "Invalid configuration:\n  TOKEN_SECRET: required when DATABASE_URL is set (at least 32 random characters, shared by every process)",
    );
  }
  if (c.REDIS_SENTINELS && !c.REDIS_URL) {
    throw new ConfigError(
      "Invalid configuration:\n  REDIS_SENTINELS: needs REDIS_URL too (its credentials, database and TLS apply to the master), e.g. redis://:password@mymaster/0",
    );
  }
  if (c.POLL_MIN_MS > c.POLL_MAX_MS) {
    throw new ConfigError("Invalid configuration:\n  POLL_MIN_MS: must not exceed POLL_MAX_MS");
  }
  if (c.RECONCILE_STALE_SECONDS * 1000 <= 2 * c.POLL_MAX_MS) {
    throw new ConfigError(
      "Invalid configuration:\n  RECONCILE_STALE_SECONDS: must be more than twice POLL_MAX_MS, or live jobs would look lost",
    );
  }
  if (c.S3_BUCKET && c.OUTPUT_URL_TTL_SECONDS > 604800) {
    throw new ConfigError(
      "Invalid configuration:\n  OUTPUT_URL_TTL_SECONDS: at most 604800 (7 days, S3's limit for signed URLs) with S3_BUCKET",
    );
  }
  if (c.SIM_PROVIDER_URL && !c.SIM_PROVIDER_TOKEN) {
    throw new ConfigError(
      "Invalid configuration:\n  SIM_PROVIDER_TOKEN: required with SIM_PROVIDER_URL",
    );
  }
  if (c.ANOMALY_CRITICAL_SIGMA <= c.ANOMALY_WARNING_SIGMA) {
    throw new ConfigError(
      "Invalid configuration:\n  ANOMALY_CRITICAL_SIGMA: must be more than ANOMALY_WARNING_SIGMA",
    );
  }
  if (c.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION > c.WS_MAX_SUBSCRIPTIONS_PER_KEY) {
    throw new ConfigError(
      "Invalid configuration:\n  WS_MAX_SUBSCRIPTIONS_PER_CONNECTION: must not exceed WS_MAX_SUBSCRIPTIONS_PER_KEY",
    );
  }
  if (c.WS_MAX_CONNECTIONS_PER_KEY > c.WS_MAX_CONNECTIONS) {
    throw new ConfigError(
      "Invalid configuration:\n  WS_MAX_CONNECTIONS_PER_KEY: must not exceed WS_MAX_CONNECTIONS",
    );
  }
  if (c.QUALITY_MODERATION === "openai" && !c.OPENAI_API_KEY) {
    throw new ConfigError(
      "Invalid configuration:\n  QUALITY_MODERATION: openai needs OPENAI_API_KEY (and OPENAI_BASE_URL for a proxy)",
    );
  }
  const publicUrl = (c.PUBLIC_URL ?? `http://localhost:${c.PORT}`).replace(/\/+$/, "");
  const webhookBaseUrl = c.WEBHOOK_BASE_URL?.replace(/\/+$/, "");
  return {
    ...c,
    PUBLIC_URL: publicUrl,
    WEBHOOK_BASE_URL: webhookBaseUrl,
    PLAYGROUND: c.PLAYGROUND ?? c.NODE_ENV !== "production",
  };
}
