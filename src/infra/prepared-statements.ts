import { createHash } from "node:crypto";
import pg from "pg";

/**
 * A statement whose text holds this comment is always sent unnamed, so Postgres plans it for
 * its parameters on every execution. For statements whose best plan depends on the values (the
 * semantic lookup: an HNSW scan for a scope of many entries, the scope's index for a few).
 */
export const UNPREPARED = "/* unprepared */";

/**
 * A star expansion (`SELECT *`, `g.*`, `RETURNING *`): its result columns are the table's at the
 * time it was prepared, and once a migration adds one Postgres refuses every later execution
 * ("cached plan must not change result type") until the statement is dropped. Such statements
 * go unnamed; those that name their columns are planned again by Postgres when a table changes.
 */
const STAR_EXPANSION = /(?:\bSELECT|\bRETURNING|\.)\s*\*/i;

/** Named statements a connection keeps at most; statements beyond them are sent unnamed. */
export const MAX_PREPARED_PER_CONNECTION = 200;

/** Each statement text's name, or null for one sent unnamed (decided once per text). */
const MAX_NAMED_TEXTS = 2_000;
const names = new Map<string, string | null>();

function nameOf(text: string): string | null {
  let name = names.get(text);
  if (name === undefined) {
    name =
      text.includes(UNPREPARED) || STAR_EXPANSION.test(text)
        ? null
        : `gg_${createHash("sha1").update(text).digest("base64url").slice(0, 20)}`;
    if (names.size < MAX_NAMED_TEXTS) names.set(text, name);
  }
  return name;
}

/**
 * node-postgres' client, sending each parameterised statement as a named prepared statement:
 * Postgres parses and analyses it once per connection instead of on every execution, and after
 * five executions may keep a generic plan (when its estimated cost is no worse than the plans
 * made for the values), which saves the planning too. Statements without parameters (BEGIN,
 * COMMIT, DDL) go as before, and so do those marked UNPREPARED and star expansions. A name is
 * the hash of the text, so it is the same on every connection and can never name two texts.
 *
 * Prepared statements are per connection: behind PgBouncer in transaction mode they need
 * PgBouncer 1.21 or later with `max_prepared_statements` set, or DB_PREPARED_STATEMENTS=false.
 */
export class PreparingClient extends pg.Client {
  private readonly named = new Set<string>();

  // Any of node-postgres' overloads; only (text, values[]) and (text, values[], callback) change.
  // Declared `never` to fit every overload: the pool calls it through pg.Client's signatures.
  override query(...args: unknown[]): never {
    const [config, values] = args as [unknown, unknown];
    if (typeof config === "string" && Array.isArray(values) && values.length > 0) {
      const name = nameOf(config);
      if (name && (this.named.has(name) || this.named.size < MAX_PREPARED_PER_CONNECTION)) {
        this.named.add(name);
        return (super.query as (...a: unknown[]) => never)(
          { name, text: config, values },
          ...args.slice(2),
        );
      }
    }
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}
