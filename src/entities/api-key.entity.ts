import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";

export type KeyRole = "ADMIN" | "PARTNER";

@Entity("api_keys")
@Index("api_keys_account_idx", ["accountId"])
export class ApiKeyEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "account_id" })
  accountId: string;

  @Column("text")
  role: KeyRole;

  @Column("text", { nullable: true })
  label: string | null;

  /** SHA-256 of the raw key; the raw key is shown once and never stored. */
  @Index("api_keys_hash_key", { unique: true })
  @Column("text", { name: "key_hash" })
  keyHash: string;

  /** First characters of the key, so an operator can recognise it in a list. */
  @Column("text", { name: "key_prefix" })
  keyPrefix: string;

  @CreateDateColumn({ name: "created_at", type: "timestamptz" })
  createdAt: Date;

  @Column("timestamptz", { name: "revoked_at", nullable: true })
  revokedAt: Date | null;
}
