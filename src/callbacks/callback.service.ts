import { randomBytes } from "node:crypto";
import { Webhook } from "standardwebhooks";
import type { Logger } from "../common/logger";
import type { CallbackDeliveryEntity, CallbackEvent } from "../entities/callback-delivery.entity";
import type { GenerationErrorInfo } from "../entities";
import type { GenerationSnapshot } from "../generation/generation.events";
import type { EnqueueOptions } from "../infra/queue/queue.driver";
import type { CallbackRepository } from "./callback.repository";
import {
  CallbackDeliveryError,
  CallbackRefusedError,
  safePost,
  type SafePostOptions,
  type SafePostResult,
} from "./safe-http";

/** The queue job that runs one delivery attempt. */
export const CALLBACK_JOB = "callback";

export interface CallbackJobData {
  /** The generation the callback is about (for logs; the delivery row says everything). */
  generationId: string;
  deliveryId: string;
}

/**
 * What the service needs from the queue. The QueueDriver is one as soon as its `JobName` has
 * `"callback"` and its `JobData` a `deliveryId`.
 */
export interface CallbackQueue {
  add(name: typeof CALLBACK_JOB, data: CallbackJobData, opts: EnqueueOptions): Promise<void>;
  restore(name: typeof CALLBACK_JOB, data: CallbackJobData, opts: EnqueueOptions): Promise<boolean>;
}

/** Reads a generation as the lifecycle publishes it. `GenerationRepository` is one. */
export interface GenerationReader {
  findSnapshot(id: string): Promise<GenerationSnapshot | null>;
}

/** An output as a receiver gets it: a link it can download without credentials. */
export interface CallbackOutput {
  url: string;
  contentType: string;
  width?: number;
  height?: number;
  durationSeconds?: number;
  bytes?: number;
}

/** Signs a generation's outputs into links, at delivery time so that they are fresh. */
export type OutputLinks = (g: GenerationSnapshot) => CallbackOutput[] | Promise<CallbackOutput[]>;

export type CallbackPoster = (
  url: string,
  body: string,
  headers: Record<string, string>,
  opts: SafePostOptions,
) => Promise<SafePostResult>;

export type CallbackType = "generation.succeeded" | "generation.failed" | "generation.canceled";

/** The JSON body of a callback (Standard Webhooks shape: type, timestamp, data). */
export interface CallbackPayload {
  type: CallbackType;
  /** When the event happened (the generation's completion), the same across retries. */
  timestamp: string;
  data: {
    id: string;
    userId: string;
    status: GenerationSnapshot["status"];
    mediaType: GenerationSnapshot["mediaType"];
    model: string;
    provider: string | null;
    cached: boolean;
    costUsd: number | null;
    outputs: CallbackOutput[];
    error: GenerationErrorInfo | null;
    metadata: unknown;
    createdAt: string;
    completedAt: string | null;
  };
}

export interface CallbackServiceOptions {
  /**
   * Waits before each retry, in ms; after the last one the delivery is FAILED. The default
   * keeps trying for 2 h 2 min over 8 attempts.
   * @defaultValue DEFAULT_CALLBACK_SCHEDULE_MS
   */
  schedule?: number[];
  /** Per-attempt deadline (Standard Webhooks suggests 15 to 30 s). @defaultValue 15000 */
  timeoutMs?: number;
  /** Let callbacks reach private addresses: tests only (`CALLBACKS_ALLOW_PRIVATE`). @defaultValue false */
  allowPrivate?: boolean;
  /** Longest `Retry-After` honoured. @defaultValue 3600000 */
  maxRetryAfterMs?: number;
  /** @defaultValue Date.now */
  clock?: () => number;
}

export const DEFAULT_CALLBACK_SCHEDULE_MS: readonly number[] = [
  5_000,
  30_000,
  2 * 60_000,
  10 * 60_000,
  20 * 60_000,
  30 * 60_000,
  60 * 60_000,
];

const EVENT_TYPES: Record<CallbackEvent, CallbackType> = {
  SUCCEEDED: "generation.succeeded",
  FAILED: "generation.failed",
  CANCELED: "generation.canceled",
};

/** A job that fires this much before its row says it is due is a stale duplicate. */
const EARLY_TOLERANCE_MS = 1000;
/** Added to the attempt deadline for the lease on a running attempt. */
const LEASE_MARGIN_MS = 60_000;

export function callbackJobId(deliveryId: string, attempt: number): string {
  return `cb-${deliveryId}-${attempt}`;
}

/** `whsec_` + 24 random bytes in base64, as Standard Webhooks secrets are written. */
export function newCallbackSecret(): string {
  return `whsec_${randomBytes(24).toString("base64")}`;
}

/**
 * Tells users' `callbackUrl`s that their generation finished: a POST signed with the Standard
 * Webhooks scheme under the account's secret, retried on the schedule until a 2xx, and each
 * delivery recorded in `callback_deliveries`.
 *
 * The policy, per attempt:
 * - 2xx: DELIVERED.
 * - refused target (SSRF, at validation or at connect time): REFUSED, never retried.
 * - 410 Gone: FAILED at once (the receiver asks us to stop).
 * - anything else (3xx, which is never followed; 4xx; 5xx; no answer): retried after the next
 *   wait of the schedule, or later if the receiver's `Retry-After` says so; FAILED after the
 *   last.
 *
 * Delivery is at least once: the message id (`webhook-id`) is the delivery id, the same across
 * retries, so receivers can drop duplicates.
 */
export class CallbackService {
  private readonly waits: readonly number[];
  private readonly timeoutMs: number;
  private readonly allowPrivate: boolean;
  private readonly maxRetryAfterMs: number;
  private readonly now: () => number;

  constructor(
    private readonly repo: CallbackRepository,
    private readonly queue: CallbackQueue,
    private readonly generations: GenerationReader,
    private readonly outputLinks: OutputLinks,
    private readonly logger: Logger,
    opts: CallbackServiceOptions = {},
    private readonly post: CallbackPoster = safePost,
  ) {
    this.waits = opts.schedule ?? DEFAULT_CALLBACK_SCHEDULE_MS;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.allowPrivate = opts.allowPrivate ?? false;
    this.maxRetryAfterMs = opts.maxRetryAfterMs ?? 3_600_000;
    this.now = opts.clock ?? Date.now;
    if (this.waits.some((ms) => !Number.isFinite(ms) || ms < 0))
      throw new Error("callback schedule: every wait must be a number of milliseconds >= 0");
  }

  /**
   * Records a callback for a finished generation and queues its first attempt. Calling it
   * again for the same generation and event returns the same delivery.
   */
  async enqueue(
    generation: GenerationSnapshot,
    event: CallbackEvent,
    callbackUrl: string,
  ): Promise<CallbackDeliveryEntity> {
    const { delivery, created } = await this.repo.create(
      { generationId: generation.id, accountId: generation.accountId, url: callbackUrl, event },
      new Date(this.now()),
    );
    if (created || (delivery.status === "PENDING" && delivery.attempt === 0)) {
      await this.queueAttempt(delivery, 0);
    }
    return delivery;
  }

  /** `enqueue` when the generation was given a callback URL; the lifecycle calls this. */
  async notify(
    generation: GenerationSnapshot,
    event: CallbackEvent,
  ): Promise<CallbackDeliveryEntity | null> {
    // Most generations have none: the snapshot says so without a read.
    if (generation.hasCallback === false) return null;
    const target = await this.repo.callbackTarget(generation.id);
    return target ? this.enqueue(generation, event, target.url) : null;
  }

  /** One delivery attempt: the `callback` job's handler. */
  async deliver(deliveryId: string): Promise<void> {
    const row = await this.repo.find(deliveryId);
    if (!row || row.status !== "PENDING") return;
    // A duplicate of a job already handled; the row's own job comes at its time.
    if (row.nextAttemptAt && row.nextAttemptAt.getTime() > this.now() + EARLY_TOLERANCE_MS) return;
    const lease = new Date(this.now() + this.timeoutMs + LEASE_MARGIN_MS);
    const d = await this.repo.claim(row.id, row.attempt, lease);
    if (!d) return;
    const log = this.logger.child({
      deliveryId: d.id,
      generationId: d.generationId,
      attempt: d.attempt,
    });
    let outcome: Outcome;
    try {
      outcome = await this.attempt(d);
    } catch (err) {
      // Our own failure (database, signing, output links): it counts as an attempt, so that
      // the schedule still ends; the receiver is not to blame, and is not named.
      log.error({ err }, "callback attempt failed before reaching the receiver");
      outcome = { kind: "retry", httpStatus: null, error: "internal error before sending" };
    }
    switch (outcome.kind) {
      case "delivered":
        await this.repo.markDelivered(d.id, d.attempt, outcome.httpStatus, new Date(this.now()));
        log.info({ status: outcome.httpStatus }, "callback delivered");
        return;
      case "final":
        log.warn({ status: outcome.status, error: outcome.error }, "callback abandoned");
        await this.repo.markFinal(d.id, d.attempt, outcome.status, {
          httpStatus: outcome.httpStatus,
          error: outcome.error,
        });
        return;
      case "retry":
        return this.retryLater(d, outcome, log);
    }
  }

  /**
   * Puts back the jobs of pending deliveries that are overdue by `graceMs` (Redis lost them,
   * or a worker died mid-attempt); a job that still exists is left alone. Returns how many it
   * put back.
   */
  async requeueDue(graceMs = 60_000, limit = 500): Promise<number> {
    const due = await this.repo.findDue(new Date(this.now() - graceMs), limit);
    let requeued = 0;
    for (const d of due) {
      const restored = await this.queue.restore(
        CALLBACK_JOB,
        { generationId: d.generationId, deliveryId: d.id },
        { jobId: callbackJobId(d.id, d.attempt + 1) },
      );
      if (restored) requeued++;
    }
    return requeued;
  }

  /** The account's signing secret (created on first use), for the partner to verify with. */
  async secretFor(accountId: string): Promise<string | null> {
    return this.repo.secretFor(accountId, newCallbackSecret);
  }

  async payload(event: CallbackEvent, g: GenerationSnapshot): Promise<CallbackPayload> {
    return {
      type: EVENT_TYPES[event],
      timestamp: g.completedAt ?? new Date(this.now()).toISOString(),
      data: {
        id: g.id,
        userId: g.userId,
        status: g.status,
        mediaType: g.mediaType,
        model: g.model,
        provider: g.provider,
        cached: g.cached,
        costUsd: g.costUsd,
        outputs: await this.outputLinks(g),
        error: g.error,
        metadata: g.metadata,
        createdAt: g.createdAt,
        completedAt: g.completedAt,
      },
    };
  }

  /** Builds, signs and sends one attempt; says what its answer means. */
  private async attempt(d: CallbackDeliveryEntity): Promise<Outcome> {
    const generation = await this.generations.findSnapshot(d.generationId);
    if (!generation) return final("FAILED", null, "the generation no longer exists");
    const secret = await this.repo.secretFor(d.accountId, newCallbackSecret);
    if (!secret) return final("FAILED", null, "the account no longer exists");
    const body = JSON.stringify(await this.payload(d.event, generation));
    const sentAt = new Date(this.now());
    const headers = {
      "content-type": "application/json",
      "user-agent": "gengate-callbacks/1",
      "webhook-id": d.messageId,
      "webhook-timestamp": String(Math.floor(sentAt.getTime() / 1000)),
      "webhook-signature": new Webhook(secret).sign(d.messageId, sentAt, body),
    };

    let result: SafePostResult;
    try {
      result = await this.post(d.url, body, headers, {
        timeoutMs: this.timeoutMs,
        allowPrivate: this.allowPrivate,
      });
    } catch (err) {
      if (err instanceof CallbackRefusedError) return final("REFUSED", null, err.message);
      if (err instanceof CallbackDeliveryError)
        return { kind: "retry", httpStatus: null, error: err.message };
      throw err;
    }

    const { status } = result;
    if (status >= 200 && status < 300) return { kind: "delivered", httpStatus: status };
    if (status === 410) return final("FAILED", status, "HTTP 410 Gone: the receiver asked to stop");
    const redirect = status >= 300 && status < 400;
    return {
      kind: "retry",
      httpStatus: status,
      error: redirect
        ? `HTTP ${status}: redirects are not followed${result.location ? ` (to ${result.location})` : ""}`
        : `HTTP ${status}`,
      retryAfterMs: result.retryAfterMs,
    };
  }

  /** A retryable failure: the next attempt after the schedule's wait, or FAILED after the last. */
  private async retryLater(
    d: CallbackDeliveryEntity,
    outcome: { httpStatus: number | null; error: string; retryAfterMs?: number },
    log: Logger,
  ): Promise<void> {
    const failure = { httpStatus: outcome.httpStatus, error: outcome.error };
    const wait = this.waits[d.attempt - 1];
    if (wait === undefined) {
      log.warn(failure, "callback failed: no attempts left");
      await this.repo.markFinal(d.id, d.attempt, "FAILED", failure);
      return;
    }
    // Never earlier than the receiver asked, within reason.
    const delayMs = Math.max(wait, Math.min(outcome.retryAfterMs ?? 0, this.maxRetryAfterMs));
    // The row first: if queueing fails, the reconciler finds the row overdue and requeues it.
    const moved = await this.repo.markRetry(
      d.id,
      d.attempt,
      failure,
      new Date(this.now() + delayMs),
    );
    if (!moved) return;
    log.warn({ ...failure, delayMs }, "callback attempt failed; retrying later");
    await this.queueAttempt(d, d.attempt, delayMs);
  }

  /** Queues attempt `done + 1`. */
  private queueAttempt(d: CallbackDeliveryEntity, done: number, delayMs = 0): Promise<void> {
    return this.queue.add(
      CALLBACK_JOB,
      { generationId: d.generationId, deliveryId: d.id },
      { jobId: callbackJobId(d.id, done + 1), ...(delayMs > 0 ? { delayMs } : {}) },
    );
  }
}

/** What one attempt comes to. */
type Outcome =
  | { kind: "delivered"; httpStatus: number }
  | { kind: "final"; status: "FAILED" | "REFUSED"; httpStatus: number | null; error: string }
  | { kind: "retry"; httpStatus: number | null; error: string; retryAfterMs?: number };

function final(status: "FAILED" | "REFUSED", httpStatus: number | null, error: string): Outcome {
  return { kind: "final", status, httpStatus, error };
}
