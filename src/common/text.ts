import { BadInputError } from "./errors";

/**
 * Postgres text and jsonb cannot hold U+0000: a string carrying one would fail deep in a query.
 * Every free-text argument passes through here first, so it fails as bad input naming its field.
 */
export function assertStorableText(field: string, value: string | null | undefined): void {
  if (value != null && value.includes("\u0000")) {
    throw new BadInputError(field, "must not contain NUL characters");
  }
}
