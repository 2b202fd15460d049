import type { DataSource } from "typeorm";
import { AccountEntity, ApiKeyEntity, type KeyRole } from "../entities";

export class ApiKeyRepository {
  constructor(private readonly db: DataSource) {}

  findActiveByHash(keyHash: string): Promise<ApiKeyEntity | null> {
    return this.db
      .getRepository(ApiKeyEntity)
      .createQueryBuilder("k")
      .where("k.key_hash = :keyHash AND k.revoked_at IS NULL", { keyHash })
      .getOne();
  }

  findAccount(id: string): Promise<AccountEntity | null> {
    return this.db.getRepository(AccountEntity).findOneBy({ id });
  }

  findKey(id: string): Promise<ApiKeyEntity | null> {
    return this.db.getRepository(ApiKeyEntity).findOneBy({ id });
  }

  async createAccountWithKey(
    name: string,
    key: { role: KeyRole; label: string | null; keyHash: string; keyPrefix: string },
  ): Promise<{ account: AccountEntity; apiKey: ApiKeyEntity }> {
    return this.db.transaction(async (m) => {
      const account = await m
        .getRepository(AccountEntity)
        .save(m.getRepository(AccountEntity).create({ name }));
      const apiKey = await m
        .getRepository(ApiKeyEntity)
        .save(m.getRepository(ApiKeyEntity).create({ ...key, accountId: account.id }));
      return { account, apiKey };
    });
  }

  createKey(key: {
    accountId: string;
    role: KeyRole;
    label: string | null;
    keyHash: string;
    keyPrefix: string;
  }): Promise<ApiKeyEntity> {
    const repo = this.db.getRepository(ApiKeyEntity);
    return repo.save(repo.create(key));
  }

  /** Revokes a key; `accountId` limits it to keys of that account. True when a key was revoked. */
  async revoke(id: string, accountId?: string): Promise<boolean> {
    const qb = this.db
      .createQueryBuilder()
      .update(ApiKeyEntity)
      .set({ revokedAt: () => "now()" })
      .where("id = :id AND revoked_at IS NULL", { id });
    if (accountId) qb.andWhere("account_id = :accountId", { accountId });
    const result = await qb.execute();
    return (result.affected ?? 0) > 0;
  }

  async countActiveKeys(role: KeyRole): Promise<number> {
    return this.db
      .getRepository(ApiKeyEntity)
      .createQueryBuilder("k")
      .where("k.role = :role AND k.revoked_at IS NULL", { role })
      .getCount();
  }

  /** The operators' account, created on first use by `gengate create-key --role admin`. */
  async findOrCreateAccount(name: string): Promise<AccountEntity> {
    const repo = this.db.getRepository(AccountEntity);
    const existing = await repo.findOne({ where: { name }, order: { createdAt: "ASC" } });
    return existing ?? repo.save(repo.create({ name }));
  }
}
