import type { KeyValueStore } from "./key-value";

/** The embedded default: one process, so a map with expiry times is the whole store. */
export class InMemoryKeyValueStore implements KeyValueStore {
  private readonly entries = new Map<string, { value: string; expiresAt: number }>();
  private nextSweep = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.sweep();
    const e = this.entries.get(key);
    if (e && e.expiresAt > this.now()) return false;
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    return true;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.sweep();
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
  }

  async get(key: string): Promise<string | null> {
    const e = this.entries.get(key);
    if (!e || e.expiresAt <= this.now()) return null;
    return e.value;
  }

  async delete(...keys: string[]): Promise<void> {
    for (const k of keys) this.entries.delete(k);
  }

  private sweep(): void {
    // Amortised: at most one pass a second, so the map never outgrows its TTLs by much and a
    // busy cache does not pay a full scan per write.
    const now = this.now();
    if (now < this.nextSweep) return;
    this.nextSweep = now + 1000;
    for (const [k, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(k);
  }
}
