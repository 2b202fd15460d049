import { Column, Entity, Index, PrimaryGeneratedColumn } from "typeorm";
import { usd } from "./transformers";

/** One end user's spending in one UTC calendar month. */
@Entity("budget_periods")
@Index("budget_periods_user_period_key", ["endUserId", "period"], { unique: true })
export class BudgetPeriodEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "end_user_id" })
  endUserId: string;

  /** `YYYY-MM` in UTC. */
  @Column("text")
  period: string;

  @Column("numeric", { name: "limit_usd", precision: 14, scale: 6, transformer: usd })
  limitUsd: number;

  @Column("numeric", { name: "spent_usd", precision: 14, scale: 6, default: 0, transformer: usd })
  spentUsd: number;

  @Column("numeric", {
    name: "reserved_usd",
    precision: 14,
    scale: 6,
    default: 0,
    transformer: usd,
  })
  reservedUsd: number;

  @Column("timestamptz", { name: "warned_at", nullable: true })
  warnedAt: Date | null;
}
