import { Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn } from "typeorm";

export type CallbackEvent = "SUCCEEDED" | "FAILED" | "CANCELED";
export type CallbackDeliveryStatus = "PENDING" | "DELIVERED" | "FAILED" | "REFUSED";

/**
 * One callback message to a user's `callbackUrl`, and how its delivery went: one row per
 * message, updated by every attempt (the counter, the last answer, when to try next). The id
 * is also the Standard Webhooks message id, the same across retries.
 */
@Entity("callback_deliveries")
@Index("callback_deliveries_generation_event_key", ["generationId", "event"], { unique: true })
@Index("callback_deliveries_due_idx", ["nextAttemptAt"], { where: "status = 'PENDING'" })
export class CallbackDeliveryEntity {
  @PrimaryGeneratedColumn("uuid")
  id: string;

  @Column("uuid", { name: "generation_id" })
  generationId: string;

  @Column("uuid", { name: "account_id" })
  accountId: string;

  @Column("text")
  url: string;

  @Column("text")
  event: CallbackEvent;

  /** Attempts started so far. */
  @Column("integer", { default: 0 })
  attempt: number;

  @Column("text", { default: "PENDING" })
  status: CallbackDeliveryStatus;

  /** The receiver's status code at the last attempt; null when it did not answer. */
  @Column("integer", { name: "http_status", nullable: true })
  httpStatus: number | null;

  /** Why the last attempt failed. */
  @Column("text", { nullable: true })
  error: string | null;

  /** `webhook-id`: receivers deduplicate on it. */
  @Column("text", { name: "message_id" })
  messageId: string;

  @CreateDateColumn({ name: "created_at", type: "timestamptz" })
  createdAt: Date;

  /**
   * While PENDING, when the row next needs a worker: the next attempt, or the end of the
   * running attempt's lease (a worker that died mid-attempt is noticed after it).
   */
  @Column("timestamptz", { name: "next_attempt_at", nullable: true })
  nextAttemptAt: Date | null;

  @Column("timestamptz", { name: "delivered_at", nullable: true })
  deliveredAt: Date | null;
}
