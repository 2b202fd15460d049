import { Column, Entity, PrimaryGeneratedColumn } from "typeorm";

export type BatchStatus = "COLLECTED" | "SUBMITTED" | "COMPLETED" | "FAILED";

/** BATCH-priority generations sent together to one provider's batch API. */
@Entity("batches")
export class BatchEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("text")
  provider: string;

  /** The catalog model; `providerModel` is the provider's own id for it. */
  @Column("text")
  model: string;

  @Column("text", { name: "provider_model" })
  providerModel: string;

  @Column("text")
  status: BatchStatus;

  @Column("text", { name: "provider_batch_id", nullable: true })
  providerBatchId: string | null;

  @Column("integer")
  size: number;

  @Column("integer", { default: 0 })
  succeeded: number;

  @Column("integer", { default: 0 })
  failed: number;

  @Column("text", { nullable: true })
  error: string | null;

  /** The status check scheduled next, so the reconciler can tell the batch is driven. */
  @Column("text", { name: "poll_job_id", nullable: true })
  pollJobId: string | null;

  @Column("timestamptz", { name: "created_at", default: () => "now()" })
  createdAt: Date;

  @Column("timestamptz", { name: "updated_at", default: () => "now()" })
  updatedAt: Date;

  @Column("timestamptz", { name: "submitted_at", nullable: true })
  submittedAt: Date | null;

  @Column("timestamptz", { name: "completed_at", nullable: true })
  completedAt: Date | null;
}
