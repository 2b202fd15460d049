import { randomUUID } from "node:crypto";
import type { DataSource } from "typeorm";
import {
  CallbackDeliveryEntity,
  type CallbackDeliveryStatus,
  type CallbackEvent,
} from "../entities/callback-delivery.entity";

export interface NewDelivery {
  generationId: string;
  accountId: string;
  url: string;
  event: CallbackEvent;
}

/** A pending delivery that is past due: what the reconciler needs to put its job back. */
export interface DueDelivery {
  id: string;
  generationId: string;
  attempt: number;
}

/**
 * Every Postgres read and write of user callbacks. Writes that move a delivery on are
 * conditional on the attempt they belong to, so a job that runs twice changes nothing twice.
 */
export class CallbackRepository {
  constructor(private readonly db: DataSource) {}

  /**
   * Records a new PENDING delivery, due at `dueAt`; or returns the one already recorded for
   * this generation and event (`created: false`).
   */
  async create(
    d: NewDelivery,
    dueAt: Date,
  ): Promise<{ delivery: CallbackDeliveryEntity; created: boolean }> {
    const id = randomUUID();
    const inserted = rows(
      await this.db.query(
        `INSERT INTO callback_deliveries
                (id, generation_id, account_id, url, event, message_id, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (generation_id, event) DO NOTHING
         RETURNING *`,
        // The message id is the delivery id: one message, however many attempts.
        [id, d.generationId, d.accountId, d.url, d.event, id, dueAt],
      ),
    );
    if (inserted[0]) return { delivery: toEntity(inserted[0]), created: true };
    const existing = await this.repo().findOneByOrFail({
      generationId: d.generationId,
      event: d.event,
    });
    return { delivery: existing, created: false };
  }

  find(id: string): Promise<CallbackDeliveryEntity | null> {
    return this.repo().findOneBy({ id });
  }

  /** Served by the (generation_id, event) unique index. */
  listForGeneration(generationId: string): Promise<CallbackDeliveryEntity[]> {
    return this.repo().find({ where: { generationId }, order: { createdAt: "ASC" } });
  }

  /** The callback URL a generation was given, with its account; null when it has none. */
  async callbackTarget(generationId: string): Promise<{ url: string; accountId: string } | null> {
    const [row] = (await this.db.query(
      `SELECT params->>'callbackUrl' AS url, account_id FROM generations WHERE id = $1`,
      [generationId],
    )) as Array<{ url: string | null; account_id: string }>;
    return row?.url ? { url: row.url, accountId: row.account_id } : null;
  }

  /**
   * Starts attempt `seenAttempt + 1` if nobody else has: the attempt counter moves on and the
   * row is leased until `leaseUntil`. Null when the delivery is finished or another worker
   * claimed that attempt first.
   */
  async claim(
    id: string,
    seenAttempt: number,
    leaseUntil: Date,
  ): Promise<CallbackDeliveryEntity | null> {
    const [row] = rows(
      await this.db.query(
        `UPDATE callback_deliveries SET attempt = attempt + 1, next_attempt_at = $3
          WHERE id = $1 AND status = 'PENDING' AND attempt = $2
          RETURNING *`,
        [id, seenAttempt, leaseUntil],
      ),
    );
    return row ? toEntity(row) : null;
  }

  async markDelivered(id: string, attempt: number, httpStatus: number, at: Date): Promise<boolean> {
    return this.settle(id, attempt, {
      status: "DELIVERED",
      httpStatus,
      error: null,
      nextAttemptAt: null,
      deliveredAt: at,
    });
  }

  /** The attempt failed and another one is due at `nextAttemptAt`. */
  async markRetry(
    id: string,
    attempt: number,
    failure: { httpStatus: number | null; error: string },
    nextAttemptAt: Date,
  ): Promise<boolean> {
    return this.settle(id, attempt, {
      status: "PENDING",
      httpStatus: failure.httpStatus,
      error: failure.error,
      nextAttemptAt,
    });
  }

  /** No more attempts: FAILED (gave up, or the receiver said 410 Gone) or REFUSED (SSRF). */
  async markFinal(
    id: string,
    attempt: number,
    status: "FAILED" | "REFUSED",
    failure: { httpStatus: number | null; error: string },
  ): Promise<boolean> {
    return this.settle(id, attempt, {
      status,
      httpStatus: failure.httpStatus,
      error: failure.error,
      nextAttemptAt: null,
    });
  }

  /** Pending deliveries due before `before`, oldest first (the partial index serves this). */
  async findDue(before: Date, limit: number): Promise<DueDelivery[]> {
    const found = (await this.db.query(
      `SELECT id, generation_id, attempt FROM callback_deliveries
        WHERE status = 'PENDING' AND next_attempt_at < $1
        ORDER BY next_attempt_at
        LIMIT $2`,
      [before, limit],
    )) as Array<{ id: string; generation_id: string; attempt: number }>;
    return found.map((r) => ({ id: r.id, generationId: r.generation_id, attempt: r.attempt }));
  }

  /**
   * The account's signing secret, stored first if it has none yet (`fresh()` makes one). One
   * statement, so two workers racing to create it agree on the winner's.
   */
  async secretFor(accountId: string, fresh: () => string): Promise<string | null> {
    const [row] = rows<{ callback_secret: string }>(
      await this.db.query(
        `UPDATE accounts SET callback_secret = COALESCE(callback_secret, $2)
          WHERE id = $1
          RETURNING callback_secret`,
        [accountId, fresh()],
      ),
    );
    return row?.callback_secret ?? null;
  }

  private async settle(
    id: string,
    attempt: number,
    to: {
      status: CallbackDeliveryStatus;
      httpStatus: number | null;
      error: string | null;
      nextAttemptAt: Date | null;
      deliveredAt?: Date;
    },
  ): Promise<boolean> {
    const [, affected] = (await this.db.query(
      `UPDATE callback_deliveries
          SET status = $3, http_status = $4, error = $5, next_attempt_at = $6,
              delivered_at = COALESCE($7, delivered_at)
        WHERE id = $1 AND attempt = $2 AND status = 'PENDING'`,
      [id, attempt, to.status, to.httpStatus, to.error, to.nextAttemptAt, to.deliveredAt ?? null],
    )) as [unknown, number];
    return affected === 1;
  }

  private repo() {
    return this.db.getRepository(CallbackDeliveryEntity);
  }
}

type RawDelivery = {
  id: string;
  generation_id: string;
  account_id: string;
  url: string;
  event: CallbackEvent;
  attempt: number;
  status: CallbackDeliveryStatus;
  http_status: number | null;
  error: string | null;
  message_id: string;
  created_at: Date;
  next_attempt_at: Date | null;
  delivered_at: Date | null;
};

/** TypeORM answers UPDATE and DELETE with `[rows, count]`, every other statement with rows. */
function rows<T = RawDelivery>(result: unknown): T[] {
  if (Array.isArray(result) && Array.isArray(result[0])) return result[0] as T[];
  return result as T[];
}

function toEntity(r: RawDelivery): CallbackDeliveryEntity {
  return Object.assign(new CallbackDeliveryEntity(), {
    id: r.id,
    generationId: r.generation_id,
    accountId: r.account_id,
    url: r.url,
    event: r.event,
    attempt: r.attempt,
    status: r.status,
    httpStatus: r.http_status,
    error: r.error,
    messageId: r.message_id,
    createdAt: r.created_at,
    nextAttemptAt: r.next_attempt_at,
    deliveredAt: r.delivered_at,
  });
}
