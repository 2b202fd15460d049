import type { ApiKeyEntity } from "../entities";

export interface ApiKeyCacheOptions {
  /** How long a found key is trusted without reading it again. @defaultValue 10 s */
  ttlMs?: number;
  /** Entries held at most; the cache starts over past it. @defaultValue 10_000 */
  maxEntries?: number;
}

type CachedKey = Pick<ApiKeyEntity, "id" | "role" | "accountId">;

/**
 * Active API keys by hash, remembered briefly so that a partner's steady stream of requests
 * does not read the same key from Postgres every time. Only found keys are remembered (an
 * unknown key always reads Postgres, so a new key works at once).
 *
 * A revocation forgets the key in the process that made it at once, and in every other
 * process when the revocation is broadcast (`forget`); the TTL bounds how long a lost
 * broadcast could let a revoked key in. A read that started before a revocation is never
 * stored after it: each `forget` moves an epoch that an older read cannot match.
 */
export class ApiKeyCache {
  private readonly entries = new Map<string, { key: CachedKey; until: number }>();
  private epoch = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(opts: ApiKeyCacheOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 10_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
  }

  /** The key for `hash`, from memory when fresh, else from `load` (remembered when found). */
  async get(hash: string, load: () => Promise<CachedKey | null>): Promise<CachedKey | null> {
    const hit = this.entries.get(hash);
    if (hit && hit.until > Date.now()) return hit.key;
    const epoch = this.epoch;
    const key = await load();
    if (key && epoch === this.epoch) {
      if (this.entries.size >= this.maxEntries) this.entries.clear();
      this.entries.set(hash, { key, until: Date.now() + this.ttlMs });
    } else if (!key) {
      this.entries.delete(hash);
    }
    return key;
  }

  /** Forgets a revoked key (by id: the hash is not known where a revocation is made). */
  forget(keyId: string): void {
    this.epoch++;
    for (const [hash, entry] of this.entries) {
      if (entry.key.id === keyId) this.entries.delete(hash);
    }
  }
}
