import { GraphQLError, type GraphQLFormattedError } from "graphql";
import { AppError, isUnavailableError, unavailable } from "../common/errors";

/**
 * The one place errors become what clients see: our errors keep their code and extensions;
 * a backing service that is down is `SERVICE_UNAVAILABLE` (see `isUnavailableError`);
 * GraphQL's own (syntax, validation, bad variables) keep theirs; anything else is an internal
 * error with no message, stack or SQL.
 */
export function formatError(
  formatted: GraphQLFormattedError,
  error: unknown,
): GraphQLFormattedError {
  let original = error instanceof GraphQLError ? (error.originalError ?? null) : error;
  // Postgres or Redis restarting is not the request's fault nor a bug: say so, and when to retry.
  if (!(original instanceof AppError) && isUnavailableError(original)) original = unavailable();
  if (original instanceof AppError) {
    return {
      message: original.message,
      locations: formatted.locations,
      path: formatted.path,
      extensions: { ...original.extensions, code: original.code },
    };
  }
  const code = formatted.extensions?.code;
  // GraphQL's own extensions, and the request limits' (the limit's name, maximum and value).
  const { stacktrace: _stack, http: _http, ...extensions } = formatted.extensions ?? {};
  if (!original || (error instanceof GraphQLError && !error.originalError)) {
    return {
      message: formatted.message,
      locations: formatted.locations,
      path: formatted.path,
      extensions: {
        ...extensions,
        code: code === "INTERNAL_SERVER_ERROR" || !code ? "BAD_USER_INPUT" : code,
      },
    };
  }
  if (original instanceof GraphQLError) {
    // Variable coercion and scalar parsing report bad input as GraphQLErrors with an original.
    return {
      message: formatted.message,
      locations: formatted.locations,
      path: formatted.path,
      extensions: { ...extensions, code: code ?? "BAD_USER_INPUT" },
    };
  }
  if (
    original instanceof TypeError &&
    /Value|parse|Int|Float|JSON|DateTime/.test(original.message)
  ) {
    return {
      message: original.message,
      locations: formatted.locations,
      path: formatted.path,
      extensions: { code: "BAD_USER_INPUT" },
    };
  }
  return {
    message: "Internal server error",
    locations: formatted.locations,
    path: formatted.path,
    extensions: { code: "INTERNAL_SERVER_ERROR" },
  };
}

/** Whether an error is one we did not expect (worth logging with its stack). */
export function isUnexpected(error: unknown): boolean {
  const original = error instanceof GraphQLError ? error.originalError : error;
  return (
    original !== undefined &&
    !(original instanceof AppError) &&
    !(original instanceof GraphQLError) &&
    !isUnavailableError(original)
  );
}
