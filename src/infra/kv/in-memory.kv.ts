import type { KeyValueStore } from "./key-value";

/** The embedded default: one process, so a map with expiry times is the whole store. */
export class InMemoryKeyValueStore implements KeyValueStore {
  private readonly entries = new Map<string, { value: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.sweep();
    if (this.entries.has(key)) return false;
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    return true;
  }

  async get(key: string): Promise<string | null> {
    const e = this.entries.get(key);
    if (!e || e.expiresAt <= this.now()) return null;
    return e.value;
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  private sweep(): void {
    // Amortised: expired entries go when new ones come, so the map never outgrows its TTLs.
    const now = this.now();
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
  }
}
