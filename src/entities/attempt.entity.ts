import { Column, Entity, Index, PrimaryGeneratedColumn } from "typeorm";
import type { QualityReportInfo } from "./generation.entity";
import { usd } from "./transformers";

export type AttemptStatus = "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELED";

/** One try of one provider for one generation. */
@Entity("attempts")
@Index("attempts_generation_number_key", ["generationId", "number"], { unique: true })
@Index("attempts_provider_job_key_idx", ["provider", "providerJobKey"], {
  where: "provider_job_key IS NOT NULL",
})
export class AttemptEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "generation_id" })
  generationId: string;

  @Column("integer")
  number: number;

  @Column("text")
  provider: string;

  @Column("text")
  model: string;

  @Column("text")
  status: AttemptStatus;

  @Column("text", { name: "provider_job_id", nullable: true })
  providerJobId: string | null;

  /** What the provider's webhooks name the job by (the job id, or part of it). */
  @Column("text", { name: "provider_job_key", nullable: true })
  providerJobKey: string | null;

  /** The queued status check that drives this attempt, so the reconciler can tell it is alive. */
  @Column("text", { name: "poll_job_id", nullable: true })
  pollJobId: string | null;

  /** The provider batch this attempt rides in; null for a request of its own. */
  @Column("uuid", { name: "batch_id", nullable: true })
  batchId: string | null;

  @Column("text", { nullable: true })
  error: string | null;

  @Column("text", { name: "error_code", nullable: true })
  errorCode: string | null;

  /** The quality gate's report on this attempt's outputs, passed or not; null when not judged. */
  @Column("jsonb", { nullable: true })
  quality: QualityReportInfo | null;

  @Column("timestamptz", { name: "started_at" })
  startedAt: Date;

  @Column("timestamptz", { name: "ended_at", nullable: true })
  endedAt: Date | null;

  @Column("integer", { name: "duration_ms", nullable: true })
  durationMs: number | null;

  @Column("numeric", {
    name: "cost_usd",
    precision: 14,
    scale: 6,
    nullable: true,
    transformer: usd,
  })
  costUsd: number | null;
}
