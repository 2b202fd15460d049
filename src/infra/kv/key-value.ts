/**
 * Small shared state with expiry (webhook replay guards, the exact cache's index). Left out: anything that must survive Redis being flushed — that lives in Postgres.
 */
export interface KeyValueStore {
  /** Sets the key only if absent; true when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /** Sets or replaces the key. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  get(key: string): Promise<string | null>;
  delete(...keys: string[]): Promise<void>;
}
