import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";
import { usd } from "./transformers";

export type Tier = "FREE" | "PRO" | "ENTERPRISE";

/** A partner's end user: `userId` is the partner's own id, unique within the account. */
@Entity("end_users")
@Index("end_users_account_user_key", ["accountId", "userId"], { unique: true })
export class EndUserEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "account_id" })
  accountId: string;

  @Column("text", { name: "user_id" })
  userId: string;

  @Column("text", { default: "FREE" })
  tier: Tier;

  /** Null means the tier's default limit. */
  @Column("numeric", {
    name: "monthly_limit_usd",
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: usd,
  })
  monthlyLimitUsd: number | null;

  @CreateDateColumn({ name: "created_at", type: "timestamptz" })
  createdAt: Date;
}
