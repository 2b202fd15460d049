import type { DataSource } from "typeorm";
import { BadInputError, NotFoundError } from "../common/errors";
import { isUuid } from "../auth/auth.service";
import { requireRole, type Viewer } from "../auth/viewer";
import { AccountEntity } from "../entities";
import type { GenerationRepository } from "../generation/generation.repository";
import type { CacheService } from "./cache.service";

export interface PurgeResult {
  /** Generations whose results no longer answer other requests. */
  generations: number;
  /** Exact-cache keys removed from Redis. */
  exactKeys: number;
  /** Prompt embeddings removed from the semantic cache. */
  semanticEntries: number;
}

const MAX_MODEL_NAME = 200;

/** Operating the cache: purging results, and an account's choice about semantic matching. */
export class CacheAdminService {
  constructor(
    private readonly db: DataSource,
    private readonly generations: GenerationRepository,
    private readonly cache: CacheService,
  ) {}

  /** ADMIN: stops every result of a model, or one generation's, from being served again. */
  async purge(
    viewer: Viewer | null,
    filter: { model?: string | null; generationId?: string | null },
  ): Promise<PurgeResult> {
    requireRole(viewer, "ADMIN");
    const model = filter.model ?? undefined;
    const generationId = filter.generationId ?? undefined;
    if (model === undefined && generationId === undefined) {
      throw new BadInputError("model", "name a model or a generationId to purge");
    }
    if (model !== undefined && (model.trim() === "" || model.length > MAX_MODEL_NAME)) {
      throw new BadInputError("model", `must be 1 to ${MAX_MODEL_NAME} characters`);
    }
    if (generationId !== undefined && !isUuid(generationId)) {
      throw new BadInputError("generationId", "must be a UUID");
    }
    // Postgres first: once a result is not cacheable there, no lookup can serve it, whatever
    // Redis still holds.
    const keys = await this.generations.purgeCacheable({ model, generationId });
    const semanticEntries = await this.cache.forgetSemantic({ model, generationId });
    await this.cache.forgetKeys(keys);
    return { generations: keys.length, exactKeys: keys.length, semanticEntries };
  }

  /**
   * Turns semantic matching on or off for an account (its own for a PARTNER, any for ADMIN).
   * Off: its prompts neither answer nor are answered by similar prompts, and its stored
   * embeddings are deleted at once. Exact hits are unaffected.
   */
  async setSemanticCache(
    viewer: Viewer | null,
    enabled: boolean,
    accountId: string | null | undefined,
  ): Promise<AccountEntity> {
    const v = requireRole(viewer, "ADMIN", "PARTNER");
    if (typeof enabled !== "boolean") throw new BadInputError("enabled", "must be a boolean");
    if (accountId != null && !isUuid(accountId)) {
      throw new BadInputError("accountId", "must be a UUID");
    }
    if (accountId != null && accountId !== v.accountId && v.role !== "ADMIN") {
      throw new NotFoundError("No such account");
    }
    const target = accountId ?? v.accountId;
    const account = await this.db.transaction(async (m) => {
      const rows = (await m.query(
        `UPDATE accounts SET semantic_cache = $2 WHERE id = $1 RETURNING id`,
        [target, enabled],
      )) as [Array<{ id: string }>, number];
      if (rows[1] === 0) return null;
      if (!enabled) {
        await m.query(`DELETE FROM semantic_cache_entries WHERE account_id = $1`, [target]);
      }
      return m.getRepository(AccountEntity).findOneByOrFail({ id: target });
    });
    if (!account) throw new NotFoundError("No such account");
    this.cache.noteSemanticOptOut(target, !enabled);
    return account;
  }
}
