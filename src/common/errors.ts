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
