/**
 * Small shared state with expiry (webhook replay guards today; rate limits and breaker state
 * later). Left out: anything that must survive Redis being flushed — that lives in Postgres.
 */
export interface KeyValueStore {
  /** Sets the key only if absent; true when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  get(key: string): Promise<string | null>;
  delete(key: string): Promise<void>;
}
