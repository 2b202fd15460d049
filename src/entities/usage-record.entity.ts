import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";
import { usd } from "./transformers";

/**
 * What one finished generation cost. At most one row per generation (unique index), which is
 * what makes "never charged twice" hold even when two workers race to finish the same job.
 */
@Entity("usage_records")
@Index("usage_records_account_created_idx", ["accountId", "createdAt"])
export class UsageRecordEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "account_id" })
  accountId: string;

  @Column("uuid", { name: "end_user_id" })
  endUserId: string;

  @Column("text", { name: "user_id" })
  userId: string;

  @Index("usage_records_generation_key", { unique: true })
  @Column("uuid", { name: "generation_id" })
  generationId: string;

  @Column("text")
  model: string;

  @Column("text", { nullable: true })
  provider: string | null;

  @Column("text", { name: "media_type" })
  mediaType: string;

  @Column("numeric", { name: "cost_usd", precision: 14, scale: 6, transformer: usd })
  costUsd: number;

  @Column("boolean", { default: false })
  cached: boolean;

  @Column("text", { name: "cache_hit_kind", nullable: true })
  cacheHitKind: "EXACT" | "SEMANTIC" | "INFLIGHT" | null;

  @Column("numeric", { name: "saved_usd", precision: 14, scale: 6, default: 0, transformer: usd })
  savedUsd: number;

  @Column("integer", { name: "duration_ms", nullable: true })
  durationMs: number | null;

  @CreateDateColumn({ name: "created_at", type: "timestamptz" })
  createdAt: Date;
}
