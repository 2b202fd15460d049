import type { Logger } from "../common/logger";
import type { KeyValueStore } from "../infra/kv/key-value";
import type { CacheHitKind } from "../entities";
import { exactCacheKey, semanticScopeKey, type CacheableRequest } from "./cache-key";
import type { Embedder } from "./embedder";
import type { SemanticCacheRepository } from "./semantic-cache.repository";

export interface CacheOptions {
  /** How long a result may answer identical or similar requests. @defaultValue 24 h */
  ttlMs: number;
  /** Cosine similarity at or above which a similar prompt is a hit. @defaultValue 0.85 */
  semanticThreshold: number;
  /** Whether similar prompts are looked up at all. @defaultValue true */
  semanticEnabled: boolean;
}

/** An earlier result that may answer a request; verified against Postgres before it is served. */
export interface CacheCandidate {
  kind: Exclude<CacheHitKind, "INFLIGHT">;
  sourceGenerationId: string;
  /** For a SEMANTIC candidate: its similarity and the prompt it was made for. */
  similarity?: number;
  originalPrompt?: string;
  /** Time the lookup took, for metrics. */
  lookupMs: number;
}

export interface LookupRequest extends CacheableRequest {
  accountId: string;
  /** A seed the caller chose asks for that exact output: only an exact hit answers it. */
  seedGiven: boolean;
}

/** A finished, paid generation whose result may be reused. */
export interface CacheableResult extends CacheableRequest {
  generationId: string;
  accountId: string;
  cacheKey: string;
  completedAt: string;
}

/** What one lookup observed, for metrics and statistics. */
export interface LookupObserver {
  cacheLookup(kind: "EXACT" | "SEMANTIC", hit: boolean, seconds: number): void;
}

const OPT_OUT_MEMO_MS = 5_000;

/**
 * The exact and semantic caches. The exact cache is an index in Redis (key → the generation
 * that holds the result, with a TTL); the semantic cache is prompt embeddings in Postgres.
 * Both only point at generations: Postgres stays the source of truth, and a candidate is
 * checked there (still cacheable, not expired, not purged) in the transaction that serves it.
 */
export class CacheService {
  /** Accounts known to have opted out of semantic matching, to spare the embedding call. */
  private readonly optedOut = new Map<string, number>();

  constructor(
    private readonly kv: KeyValueStore,
    private readonly semantic: { repo: SemanticCacheRepository; embedder: Embedder } | null,
    private readonly opts: CacheOptions,
    private readonly logger: Logger,
    private readonly observer: LookupObserver = { cacheLookup: () => undefined },
  ) {}

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  keyFor(r: CacheableRequest): string {
    return exactCacheKey(r);
  }

  /** The exact candidate, else the closest similar one at or above the threshold. */
  async lookup(r: LookupRequest): Promise<CacheCandidate | null> {
    const started = performance.now();
    const sourceGenerationId = await this.kv
      .get(exactIndexKey(this.keyFor(r)))
      .catch((err: unknown) => {
        // Redis is only the index: Postgres still finds an identical result when queuing.
        this.logger.warn({ err }, "exact cache lookup failed; treated as a miss");
        return null;
      });
    const exactMs = performance.now() - started;
    this.observer.cacheLookup("EXACT", sourceGenerationId !== null, exactMs / 1000);
    if (sourceGenerationId) return { kind: "EXACT", sourceGenerationId, lookupMs: exactMs };
    if (!this.semantic || !this.opts.semanticEnabled || r.seedGiven) return null;
    if ((this.optedOut.get(r.accountId) ?? 0) > Date.now()) return null;

    const semanticStarted = performance.now();
    let match;
    try {
      const [embedding] = await this.semantic.embedder.embed([r.prompt]);
      match = await this.semantic.repo.nearest({
        accountId: r.accountId,
        embedder: this.semantic.embedder.id,
        scopeKey: semanticScopeKey(r),
        embedding: embedding!,
      });
    } catch (err) {
      // The semantic cache only saves money: when it cannot answer, the request goes on.
      this.logger.warn({ err }, "semantic cache lookup failed; treated as a miss");
      return null;
    }
    const semanticMs = performance.now() - semanticStarted;
    const hit = match !== null && match.similarity >= this.opts.semanticThreshold;
    this.observer.cacheLookup("SEMANTIC", hit, semanticMs / 1000);
    if (!hit) return null;
    return {
      kind: "SEMANTIC",
      sourceGenerationId: match!.generationId,
      similarity: Math.min(1, Math.round(match!.similarity * 10_000) / 10_000),
      originalPrompt: match!.prompt,
      lookupMs: performance.now() - started,
    };
  }

  /** Makes a paid result answer later identical (and, if shared, similar) requests. */
  async remember(result: CacheableResult): Promise<void> {
    const expiresAt = Date.parse(result.completedAt) + this.opts.ttlMs;
    const ttlMs = expiresAt - Date.now();
    if (ttlMs <= 0) return;
    await this.kv.set(exactIndexKey(result.cacheKey), result.generationId, ttlMs);
    if (!this.semantic || !this.opts.semanticEnabled) return;
    try {
      const [embedding] = await this.semantic.embedder.embed([result.prompt]);
      await this.semantic.repo.insert({
        generationId: result.generationId,
        accountId: result.accountId,
        embedder: this.semantic.embedder.id,
        scopeKey: semanticScopeKey(result),
        model: result.model,
        prompt: result.prompt,
        embedding: embedding!,
        expiresAt: new Date(expiresAt),
      });
    } catch (err) {
      this.logger.warn(
        { err, generationId: result.generationId },
        "semantic cache entry not stored",
      );
    }
  }

  /** Removes exact-cache index entries (their generations were purged or are no longer valid). */
  async forgetKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 500) {
      await this.kv.delete(...keys.slice(i, i + 500).map(exactIndexKey));
    }
  }

  async forgetSemantic(filter: {
    model?: string;
    generationId?: string;
    accountId?: string;
  }): Promise<number> {
    return this.semantic ? this.semantic.repo.deleteWhere(filter) : 0;
  }

  /** Remembers an account's opt-out for a few seconds (the lookup query checks it anyway). */
  noteSemanticOptOut(accountId: string, optedOut: boolean): void {
    if (optedOut) this.optedOut.set(accountId, Date.now() + OPT_OUT_MEMO_MS);
    else this.optedOut.delete(accountId);
  }

  /** Deletes expired semantic entries, and keeps the planner's view of the table current. */
  async sweepExpired(): Promise<number> {
    if (!this.semantic) return 0;
    const swept = await this.semantic.repo.deleteExpired();
    // Only the lookups' speed depends on it: a failure must not stop the pass it runs in.
    await this.semantic.repo.refreshStatistics().then(
      (analyzed) => analyzed && this.logger.debug("semantic cache statistics refreshed"),
      (err: unknown) => this.logger.warn({ err }, "semantic cache statistics not refreshed"),
    );
    return swept;
  }
}

function exactIndexKey(cacheKey: string): string {
  return `cache:exact:${cacheKey}`;
}
