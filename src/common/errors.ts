/**
 * Errors that reach clients. Each has a stable code that becomes `extensions.code`;
 * anything else is reported to clients as an internal error without details.
 */
export abstract class AppError extends Error {
  abstract readonly code: string;
  readonly extensions: Record<string, unknown>;

  constructor(message: string, extensions: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.extensions = extensions;
  }
}

export class UnauthenticatedError extends AppError {
  readonly code = "UNAUTHENTICATED";
  constructor(message = "A valid API key or client token is required") {
    super(message);
  }
}

export class ForbiddenError extends AppError {
  readonly code = "FORBIDDEN";
}

export class NotFoundError extends AppError {
  readonly code = "NOT_FOUND";
}

export class BadInputError extends AppError {
  readonly code = "BAD_USER_INPUT";
  constructor(field: string, message: string) {
    super(`${field}: ${message}`, { field });
  }
}

export class IdempotencyConflictError extends AppError {
  readonly code = "IDEMPOTENCY_CONFLICT";
  constructor() {
    super("idempotencyKey was already used with different parameters");
  }
}

export class RateLimitedError extends AppError {
  readonly code = "RATE_LIMITED";
  constructor(retryAfterSeconds: number) {
    super(`Too many requests; retry in ${retryAfterSeconds} s`, { retryAfterSeconds });
  }
}

export class ServiceUnavailableError extends AppError {
  readonly code = "SERVICE_UNAVAILABLE";
}

export class BudgetExceededError extends AppError {
  readonly code = "BUDGET_EXCEEDED";
  constructor(details: {
    /** Whose limit: the end user's monthly budget, or the account's. */
    scope: "USER" | "ACCOUNT";
    currentUsd: number;
    limitUsd: number;
    requestedUsd: number;
    resetsAt: string;
  }) {
    super(
      `${details.scope === "USER" ? "The user's" : "The account's"} monthly budget would be exceeded: ` +
        `${details.currentUsd.toFixed(6)} of ${details.limitUsd.toFixed(6)} USD used, ` +
        `${details.requestedUsd.toFixed(6)} USD requested; it resets at ${details.resetsAt}`,
      details,
    );
  }
}

/** Node socket errors that mean the server at the other end could not be reached. */
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/**
 * SQLSTATEs of a Postgres that is restarting or refusing connections: class 08 (connection
 * exception), admin and crash shutdown, starting up, too many connections.
 */
const PG_UNAVAILABLE = /^(08...|57P0[123]|53300)$/;

const UNAVAILABLE_MESSAGES =
  /Connection terminated|terminating connection|the database system is (starting up|shutting down|in recovery mode)|Client has encountered a connection error|timeout exceeded when trying to connect|Connection is closed/i;

/**
 * Whether an error means a backing service (Postgres, Redis) is unreachable or restarting
 * rather than that the request or the code is wrong: such failures are answered
 * `SERVICE_UNAVAILABLE` (retry shortly), not as internal errors. Looks through TypeORM's
 * `driverError`, `cause` and AggregateError's `errors`.
 */
export function isUnavailableError(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== "object" || depth > 4) return false;
  const e = err as {
    code?: unknown;
    message?: unknown;
    driverError?: unknown;
    cause?: unknown;
    errors?: unknown;
  };
  if (typeof e.code === "string" && (UNREACHABLE_CODES.has(e.code) || PG_UNAVAILABLE.test(e.code)))
    return true;
  if (typeof e.message === "string" && UNAVAILABLE_MESSAGES.test(e.message)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isUnavailableError(x, depth + 1)))
    return true;
  return isUnavailableError(e.driverError, depth + 1) || isUnavailableError(e.cause, depth + 1);
}

/** What a request that met an unavailable backing service is answered. */
export function unavailable(): ServiceUnavailableError {
  return new ServiceUnavailableError(
    "A backing service is unavailable (restarting or unreachable); retry shortly",
    { retryAfterSeconds: 1 },
  );
}
